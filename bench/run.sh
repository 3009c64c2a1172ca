#!/usr/bin/env bash
# bench/run.sh — nsrun against the alternatives, in one run, on this machine.
#
#   sudo bench/run.sh                  # N = 100 500 1000, 3 rounds, Mininet at N = 200
#   sudo bench/run.sh -n "100 500" -r 5 -m ""
#
# Each method builds the star of bench/star.star — per host a namespace, a
# veth pair with one end in it, an IPv4 and an IPv6 address on that end,
# both ends up, the other end a port of one bridge — and tears it down:
#
#   nsrun     nsrun -q bench/star.star N; nsrun down star
#   floor     bench/floor: the fewest netlink requests the work needs, in a
#             minimal Go program (a socket of its own per namespace, lo by
#             index, both veth ends' indexes from the creation's echo),
#             torn down by one request for the links and one unmount per
#             namespace (the batched floor)
#   shell     a script of ip commands, one process per operation
#   batch     ip -batch: one file for the host (namespaces, veths created
#             in place, bridge ports), one `ip -n NS -batch` per namespace
#   mininet   mn --switch lxbr --controller none --topo single,N --test none
#             (build and teardown together; only at the sizes of -m)
#   nsrun-v4, floor-v4
#             the same lab with IPv6 off in the hosts (bench/star.star N v4,
#             floor -v4): two IPv4 addresses, and none of the IPv6 traffic
#             (DAD, MLD, router solicitations) that each new host floods to
#             every port of the bridge, whose cost grows with the lab
#
# nsrun-rb is a run that fails once built (bench/star.star N fail): its
# teardown column is the rollback. Methods alternate within each round; each time is the median over the
# rounds. A teardown counts until the kernel has removed the hosts' links
# (namespace deletion finishes in the background). Everything runs in a
# sandbox (a fresh network and mount namespace): the machine is untouched.
set -euo pipefail

sizes="100 500 1000"
rounds=3
mininet_sizes="200"
while getopts "n:r:m:h" o; do
	case $o in
	n) sizes=$OPTARG ;;
	r) rounds=$OPTARG ;;
	m) mininet_sizes=$OPTARG ;;
	*) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

here=$(cd "$(dirname "$0")" && pwd)
if [[ ${NSRUN_BENCH_INSIDE:-} != 1 ]]; then
	[[ $(id -u) == 0 ]] || { echo "bench/run.sh: run it as root (it builds namespaces in a sandbox)" >&2; exit 2; }
	work=$(mktemp -d /tmp/nsrun-bench.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	(cd "$here/.." && go build -o "$work/nsrun" ./cmd/nsrun && go build -o "$work/floor" ./bench/floor)
	NSRUN_BENCH_INSIDE=1 NSRUN_BENCH_WORK=$work unshare --net --mount --propagation private \
		"$0" -n "$sizes" -r "$rounds" -m "$mininet_sizes"
	exit
fi

# Inside the sandbox.
work=$NSRUN_BENCH_WORK
mount -t tmpfs tmpfs /run/netns 2>/dev/null || { mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns; }
mkdir -p /run/nsrun && mount -t tmpfs tmpfs /run/nsrun
ip link set lo up
export PATH=$work:$PATH

now() { date +%s.%N; }
# gone waits until the kernel has removed the hosts' links and the bridge.
gone() {
	while ip -o link show 2>/dev/null | grep -qE ' (v-h[0-9]+|br-star|s1-eth[0-9]+|s1)[@:]'; do sleep 0.01; done
}
# settle waits for the namespaces of the last teardown to be freed, so that
# one method's background cleanup does not slow the next one down.
settle() { gone; sleep 0.5; }

addr4() { local a=$(($1 + 1)); echo "10.$((a >> 16)).$(((a >> 8) & 255)).$((a & 255))/8"; }
addr6() { printf 'fd00::%x/64' $(($1 + 1)); }

gen_shell() { # N -> setup.sh, teardown.sh
	local n=$1 i
	{
		echo "ip link add br-star type bridge && ip link set br-star up"
		for ((i = 0; i < n; i++)); do
			echo "ip netns add h$i"
			echo "ip -n h$i link set lo up"
			echo "ip link add v-h$i type veth peer name eth0 netns h$i"
			echo "ip link set v-h$i master br-star"
			echo "ip link set v-h$i up"
			echo "ip -n h$i addr add $(addr4 $i) dev eth0"
			echo "ip -n h$i addr add $(addr6 $i) dev eth0 nodad"
			echo "ip -n h$i link set eth0 up"
		done
	} >"$work/setup.sh"
	{
		for ((i = 0; i < n; i++)); do
			echo "ip link del v-h$i"
			echo "ip netns del h$i"
		done
		echo "ip link del br-star"
	} >"$work/teardown.sh"
}

gen_batch() { # N -> host.batch, h$i.batch, batch-teardown
	local n=$1 i
	{
		echo "link add br-star type bridge"
		echo "link set br-star up"
		for ((i = 0; i < n; i++)); do
			echo "netns add h$i"
			echo "link add v-h$i master br-star up type veth peer name eth0 netns h$i"
		done
	} >"$work/host.batch"
	mkdir -p "$work/ns"
	for ((i = 0; i < n; i++)); do
		printf 'link set lo up\naddr add %s dev eth0\naddr add %s dev eth0 nodad\nlink set eth0 up\n' \
			"$(addr4 $i)" "$(addr6 $i)" >"$work/ns/h$i.batch"
	done
	{
		for ((i = 0; i < n; i++)); do echo "netns del h$i"; done
		echo "link del br-star"
	} >"$work/teardown.batch"
}

declare -A times # key "method setup|teardown N" -> space-separated samples

sample() { times["$1"]+="$2 "; }

run_nsrun() {
	local n=$1 t0 t1 t2
	t0=$(now); nsrun -q "$here/star.star" "$n"; t1=$(now)
	nsrun down -q star; gone; t2=$(now)
	sample "nsrun setup $n" "$(echo "$t1 - $t0" | bc)"
	sample "nsrun teardown $n" "$(echo "$t2 - $t1" | bc)"
	# a failed run: built, then rolled back (exit 1); the rollback counts
	# from nsrun's report of the failure (printed before it rolls back)
	rm -f "$work/tfail"
	{ nsrun -q "$here/star.star" "$n" fail 2>&1 >/dev/null || true; } |
		while IFS= read -r line; do
			if [[ $line == *"Error in fail"* ]]; then now >"$work/tfail"; fi
		done
	gone; t1=$(now)
	sample "nsrun rollback $n" "$(echo "$t1 - $(cat "$work/tfail")" | bc)"
	settle
	# peak memory of the run (kB), from GNU time if installed
	if [[ -x /usr/bin/time ]]; then
		/usr/bin/time -f %M -o "$work/rss" nsrun -q "$here/star.star" "$n"
		nsrun down -q star; gone
		sample "nsrun rss $n" "$(cat "$work/rss")"
	fi
}

run_floor() {
	local n=$1 t0 t1 t2
	t0=$(now); floor -n "$n" setup; t1=$(now)
	floor -n "$n" teardown; gone; t2=$(now)
	sample "floor setup $n" "$(echo "$t1 - $t0" | bc)"
	sample "floor teardown $n" "$(echo "$t2 - $t1" | bc)"
}

run_nsrun-v4() {
	local n=$1 t0 t1 t2
	t0=$(now); nsrun -q "$here/star.star" "$n" v4; t1=$(now)
	nsrun down -q star; gone; t2=$(now)
	sample "nsrun-v4 setup $n" "$(echo "$t1 - $t0" | bc)"
	sample "nsrun-v4 teardown $n" "$(echo "$t2 - $t1" | bc)"
}

run_floor-v4() {
	local n=$1 t0 t1 t2
	t0=$(now); floor -n "$n" -v4 setup; t1=$(now)
	floor -n "$n" teardown; gone; t2=$(now)
	sample "floor-v4 setup $n" "$(echo "$t1 - $t0" | bc)"
	sample "floor-v4 teardown $n" "$(echo "$t2 - $t1" | bc)"
}

run_shell() {
	local n=$1 t0 t1 t2
	t0=$(now); bash -e "$work/setup.sh"; t1=$(now)
	bash -e "$work/teardown.sh"; gone; t2=$(now)
	sample "shell setup $n" "$(echo "$t1 - $t0" | bc)"
	sample "shell teardown $n" "$(echo "$t2 - $t1" | bc)"
}

run_batch() {
	local n=$1 t0 t1 t2 i
	t0=$(now)
	ip -batch "$work/host.batch"
	for ((i = 0; i < n; i++)); do ip -n "h$i" -batch "$work/ns/h$i.batch"; done
	t1=$(now)
	ip -batch "$work/teardown.batch"; gone; t2=$(now)
	sample "batch setup $n" "$(echo "$t1 - $t0" | bc)"
	sample "batch teardown $n" "$(echo "$t2 - $t1" | bc)"
}

run_mininet() {
	local n=$1 t0 t1
	t0=$(now)
	(cd "$work" && mn --switch lxbr --controller none --topo "single,$n" --test none >/dev/null 2>&1)
	gone; t1=$(now)
	sample "mininet both $n" "$(echo "$t1 - $t0" | bc)"
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
get() { echo "${times[$1]:-}" | median; }
ms() { echo "$1 * 1000 / $2" | bc -l | xargs printf '%.2f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }

for n in $sizes; do
	gen_shell "$n"
	gen_batch "$n"
	for ((r = 1; r <= rounds; r++)); do
		echo "N=$n round $r/$rounds" >&2
		for m in nsrun floor shell batch nsrun-v4 floor-v4; do
			"run_$m" "$n"
			settle
		done
	done
done
for n in $mininet_sizes; do
	for ((r = 1; r <= rounds; r++)); do
		echo "N=$n round $r/$rounds: nsrun and mininet" >&2
		run_nsrun "$n"; settle
		run_mininet "$n"; settle
	done
done

echo
echo "per host, milliseconds (median of $rounds rounds)"
printf '%-6s %-9s %9s %9s %9s\n' N method setup teardown total
for n in $sizes; do
	for m in nsrun floor shell batch nsrun-v4 floor-v4; do
		s=$(get "$m setup $n"); t=$(get "$m teardown $n")
		printf '%-6s %-9s %9s %9s %9s\n' "$n" "$m" "$(ms "$s" "$n")" "$(ms "$t" "$n")" "$(ms "$(echo "$s + $t" | bc)" "$n")"
	done
	s=$(get "nsrun setup $n"); rb=$(get "nsrun rollback $n")
	printf '%-6s %-9s %9s %9s %9s\n' "$n" "nsrun-rb" "$(ms "$s" "$n")" "$(ms "$rb" "$n")" "$(ms "$(echo "$s + $rb" | bc)" "$n")"
done
for n in $mininet_sizes; do
	printf '%-6s %-9s %9s %9s %9s\n' "$n" mininet - - "$(ms "$(get "mininet both $n")" "$n")"
done

echo
echo "targets (ratios measured in this run)"
check() { # description value op limit
	local ok
	ok=$(echo "$2 $3 $4" | bc -l)
	printf '  %-62s %7s  %s\n' "$1" "$2" "$([[ $ok == 1 ]] && echo ok || echo MISSED)"
}
for n in $sizes; do
	ns=$(get "nsrun setup $n"); nt=$(get "nsrun teardown $n")
	fs=$(get "floor setup $n"); ft=$(get "floor teardown $n")
	ss=$(get "shell setup $n"); st=$(get "shell teardown $n")
	bs=$(get "batch setup $n"); bt=$(get "batch teardown $n")
	echo " N=$n"
	check "1. setup nsrun/floor (<= 1.2)" "$(ratio "$ns" "$fs")" "<=" 1.2
	check "1. setup nsrun/floor, IPv6 off in the hosts (<= 1.2)" "$(ratio "$(get "nsrun-v4 setup $n")" "$(get "floor-v4 setup $n")")" "<=" 1.2
	check "1. teardown nsrun/floor batched (<= 1.5)" "$(ratio "$nt" "$ft")" "<=" 1.5
	check "2. shell/nsrun, setup + teardown (>= 10)" "$(ratio "$(echo "$ss + $st" | bc)" "$(echo "$ns + $nt" | bc)")" ">=" 10
	check "2. ip-batch/nsrun, setup + teardown (>= 3)" "$(ratio "$(echo "$bs + $bt" | bc)" "$(echo "$ns + $nt" | bc)")" ">=" 3
	rb=$(get "nsrun rollback $n")
	check "6. rollback of a failed run / teardown (<= 1.1: as fast)" "$(ratio "$rb" "$nt")" "<=" 1.1
	rss=$(get "nsrun rss $n")
	[[ -n $rss ]] && check "5. nsrun peak memory, MB (< 100)" "$(echo "$rss / 1024" | bc -l | xargs printf '%.1f')" "<" 100
done
for n in $mininet_sizes; do
	ns=$(get "nsrun setup $n"); nt=$(get "nsrun teardown $n")
	check "3. mininet/nsrun at N=$n, build + teardown (>= 20)" "$(ratio "$(get "mininet both $n")" "$(echo "$ns + $nt" | bc)")" ">=" 20
done
set -- $sizes
first=$1; last=${!#}
if [[ $first != "$last" ]]; then
	growth() { ratio "$(echo "$(get "$1 setup $last") / $last" | bc -l)" "$(echo "$(get "$1 setup $first") / $first" | bc -l)"; }
	check "4. per-host setup, N=$last over N=$first (<= 1.5)" "$(growth nsrun)" "<=" 1.5
	printf '  %-62s %7s\n' "   the floor's own, with IPv6's floods in the kernel" "$(growth floor)"
	check "4. per-host setup, N=$last over N=$first, IPv6 off (<= 1.5)" "$(growth nsrun-v4)" "<=" 1.5
	printf '  %-62s %7s\n' "   the floor's own, IPv6 off" "$(growth floor-v4)"
fi
