#!/usr/bin/env bash
# bench/run.sh — nsrun against the alternatives, in one run, on this machine.
#
#   sudo bench/run.sh            # in a sandbox and in the machine's namespace: N = 300 1000,
#                                # shell and ip -batch at 300, Mininet at 150 300, 3 rounds,
#                                # the one-host lab, the routed lab of 1,000 and 10,000 hosts
#   sudo bench/run.sh -w sandbox -n "300" -s "" -m "" -k "" -r 5
#
#   -w sandbox|machine|both   where the labs are built (default both)
#   -n SIZES      star sizes for nsrun and the floor (default "300 1000")
#   -s SIZES      star sizes for shell and ip -batch too (default "300")
#   -m SIZES      Mininet sizes (default "150 300"; "" for none)
#   -k SHAPES     routed labs, SEGMENTSxHOSTS (default "4x250 40x250"; "" for none)
#   -r ROUNDS     rounds (default 3); each time is the median over the rounds
#
# Each method builds the star of bench/star.star — per host a namespace, a
# veth pair with one end in it, an IPv4 and an IPv6 address on that end,
# both ends up, the other end a port of one bridge — and tears it down:
#
#   nsrun     nsrun -q bench/star.star N; nsrun down star
#   floor     bench/floor: the fewest netlink requests the work needs, in a
#             minimal Go program (a socket of its own per namespace, lo by
#             index, both veth ends' indexes from the creation's echo, the
#             host end up and bridged by the same request), torn down by
#             one request for the links and one unmount per namespace (the
#             batched floor); its times are its own, from inside the process
#   shell     a script of ip commands, one process per operation
#   batch     ip -batch: one file for the host (namespaces, veths created
#             in place, bridge ports), one `ip -n NS -batch` per namespace
#   mininet   mn --switch lxbr --controller none --topo single,N --test none
#             (build and teardown together)
#   nsrun-v4, floor-v4
#             the same lab with IPv6 off in the hosts (bench/star.star N v4,
#             floor -v4): two IPv4 addresses, and none of the IPv6 traffic
#             (DAD, MLD, router solicitations) that each new host floods to
#             every port of the bridge, whose cost grows with the lab
#   nsrun-rb  a run that fails once built (bench/star.star N fail): its
#             teardown column is the rollback
#
# Methods alternate within each round. A teardown counts until the kernel
# has removed the hosts' links (namespace deletion finishes in the
# background). "one" is the smallest lab (bench/one.star: a namespace, a
# veth pair, two addresses, up) against the seven ip commands it replaces,
# median of 21. "routed" is bench/routed.star (segments of lan()s behind a
# router namespace, IPv6 off): build, reach from a sample of 100 hosts,
# teardown, nsrun's peak memory and the kernel's memory per host; and the
# floor for as many namespaces with IPv6 off (floor -v4 -per HOSTS).
#
# In a sandbox (a fresh network and mount namespace) the machine is
# untouched; in the machine's namespace the labs use the machine's
# /run/netns and state directory, under names (h*, v-h*, br-star, one*,
# core, seg*, s*-h*) that run.sh first checks are free.
set -euo pipefail

where=both
sizes="300 1000"
shell_sizes="300"
mininet_sizes="150 300"
routed="4x250 40x250"
rounds=3
while getopts "w:n:s:m:k:r:h" o; do
	case $o in
	w) where=$OPTARG ;;
	n) sizes=$OPTARG ;;
	s) shell_sizes=$OPTARG ;;
	m) mininet_sizes=$OPTARG ;;
	k) routed=$OPTARG ;;
	r) rounds=$OPTARG ;;
	*) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
opts=(-n "$sizes" -s "$shell_sizes" -m "$mininet_sizes" -k "$routed" -r "$rounds")

if [[ -z ${NSRUN_BENCH_INSIDE:-} ]]; then
	[[ $(id -u) == 0 ]] || { echo "bench/run.sh: run it as root (it builds namespaces)" >&2; exit 2; }
	case $where in sandbox | machine | both) ;; *) echo "bench/run.sh: -w sandbox, machine or both" >&2; exit 2 ;; esac
	work=$(mktemp -d /tmp/nsrun-bench.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	(cd "$here/.." && CGO_ENABLED=0 go build -o "$work/nsrun" ./cmd/nsrun && go build -o "$work/floor" ./bench/floor)
	# Mininet's lxbr switch needs brctl: install it where apt can, else
	# the Mininet column says why it is empty.
	if [[ -n $mininet_sizes ]] && command -v mn >/dev/null && ! command -v brctl >/dev/null && command -v apt-get >/dev/null; then
		echo "installing bridge-utils (brctl) for Mininet's lxbr switch" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bridge-utils >/dev/null 2>&1 || true
	fi
	if [[ $where != machine ]]; then
		NSRUN_BENCH_INSIDE=sandbox NSRUN_BENCH_WORK=$work unshare --net --mount --propagation private "$0" "${opts[@]}"
	fi
	if [[ $where != sandbox ]]; then
		NSRUN_BENCH_INSIDE=machine NSRUN_BENCH_WORK=$work "$0" "${opts[@]}"
	fi
	exit
fi

place=$NSRUN_BENCH_INSIDE
work=$NSRUN_BENCH_WORK
export PATH=$work:$PATH
if [[ $place == sandbox ]]; then
	mkdir -p /run/netns /run/nsrun
	mount -n -t tmpfs tmpfs /run/netns
	mount -n -t tmpfs tmpfs /run/nsrun
	ip link set lo up
else
	# The machine's own namespace: only names of its own, all free.
	taken=$(
		{ ls /run/netns 2>/dev/null; ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1; } |
			grep -E '^(h[0-9]+|v-h[0-9]+|br-star|one|one-a|core|seg[0-9]+|s[0-9]+-h[0-9]+|s1|s1-eth[0-9]+)$' | head -3 || true
	)
	if [[ -n $taken ]]; then
		echo "bench/run.sh: the machine has $(echo $taken | tr '\n' ' ')— names the benchmark uses; not measuring in its namespace" >&2
		exit 1
	fi
	for lab in star one routed; do
		if nsrun ls 2>/dev/null | grep -qw "^$lab"; then
			echo "bench/run.sh: a lab \"$lab\" is up; not measuring in the machine's namespace" >&2
			exit 1
		fi
	done
fi

# now prints the time in seconds; ms prints milliseconds since $1.
now() { date +%s.%N; }
# gone waits until the kernel has removed the star's links and the bridge.
gone() {
	while ip -o link show 2>/dev/null | grep -qE ' (v-h[0-9]+|br-star(-[0-9]+)?|s1-eth[0-9]+|s1|one-a)[@:]'; do sleep 0.01; done
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

declare -A times # key "method setup|teardown|rollback|both|rss N" -> space-separated samples

sample() { [[ -z $2 ]] || times["$1"]+="$2 "; }
# peak FILE CMD... runs CMD and writes its peak memory (kB) to FILE, if
# GNU time is installed.
peak() {
	local f=$1; shift
	if [[ -x /usr/bin/time ]]; then /usr/bin/time -f %M -o "$f" "$@"; else : >"$f"; "$@"; fi
}
since() { echo "$(now) - $1" | bc; }

run_nsrun() {
	local n=$1 t0 t1
	t0=$(now); nsrun -q "$here/star.star" "$n"; sample "nsrun setup $n" "$(since "$t0")"
	t1=$(now); nsrun down star >/dev/null 2>&1; gone; sample "nsrun teardown $n" "$(since "$t1")"
	# a failed run: built, then rolled back (exit 1); the rollback counts
	# from nsrun's report of the failure (printed before it rolls back)
	rm -f "$work/tfail"
	{ nsrun -q "$here/star.star" "$n" fail 2>&1 >/dev/null || true; } |
		while IFS= read -r line; do
			if [[ $line == *"Error in fail"* ]]; then now >"$work/tfail"; fi
		done
	gone
	sample "nsrun rollback $n" "$(since "$(cat "$work/tfail")")"
	settle
	peak "$work/rss" nsrun -q "$here/star.star" "$n"
	nsrun down star >/dev/null 2>&1; gone
	sample "nsrun rss $n" "$(cat "$work/rss")"
}

# floor_time runs the floor and prints its own time, in seconds.
floor_time() { floor -t "$@" 2>&1 >/dev/null | awk '/^floor:/ {print $(NF-1) / 1000}'; }

run_floor() {
	local n=$1
	sample "floor setup $n" "$(floor_time -n "$n" setup)"
	sample "floor teardown $n" "$(floor_time -n "$n" teardown)"; gone
}

run_nsrun-v4() {
	local n=$1 t0 t1
	t0=$(now); nsrun -q "$here/star.star" "$n" v4; sample "nsrun-v4 setup $n" "$(since "$t0")"
	t1=$(now); nsrun down star >/dev/null 2>&1; gone; sample "nsrun-v4 teardown $n" "$(since "$t1")"
}

run_floor-v4() {
	local n=$1
	sample "floor-v4 setup $n" "$(floor_time -n "$n" -v4 setup)"
	sample "floor-v4 teardown $n" "$(floor_time -n "$n" teardown)"; gone
}

run_shell() {
	local n=$1 t0 t1
	t0=$(now); bash -e "$work/setup.sh"; sample "shell setup $n" "$(since "$t0")"
	t1=$(now); bash -e "$work/teardown.sh"; gone; sample "shell teardown $n" "$(since "$t1")"
}

run_batch() {
	local n=$1 t0 t1 i
	t0=$(now)
	ip -batch "$work/host.batch"
	for ((i = 0; i < n; i++)); do ip -n "h$i" -batch "$work/ns/h$i.batch"; done
	sample "batch setup $n" "$(since "$t0")"
	t1=$(now); ip -batch "$work/teardown.batch"; gone; sample "batch teardown $n" "$(since "$t1")"
}

mininet_skip=""
if ! command -v mn >/dev/null; then
	mininet_skip="mn is not installed (apt-get install mininet bridge-utils)"
elif ! command -v brctl >/dev/null; then
	mininet_skip="brctl is missing: Mininet's lxbr switch needs bridge-utils"
fi
# Mininet raises global limits (kernel.pty.max, net.core.*) that are the
# machine's: it runs where /proc/sys is read-only, and copes.
run_mininet() {
	local n=$1 t0
	t0=$(now)
	(cd "$work" && unshare --mount --propagation private sh -c \
		'mount -n --bind /proc/sys /proc/sys && mount -n -o remount,bind,ro /proc/sys && exec mn "$@"' \
		sh --switch lxbr --controller none --topo "single,$n" --test none >/dev/null 2>&1)
	gone; sample "mininet both $n" "$(since "$t0")"
}

# The smallest lab, against the ip commands it replaces.
one_ip_up() {
	ip netns add one
	ip -n one link set lo up
	ip link add one-a type veth peer name eth0 netns one
	ip addr add 10.99.0.1/24 dev one-a
	ip link set one-a up
	ip -n one addr add 10.99.0.2/24 dev eth0
	ip -n one link set eth0 up
}
run_one() {
	local t0 i
	for ((i = 0; i < 21; i++)); do
		t0=$(now); nsrun -q "$here/one.star"; sample "one-nsrun setup" "$(since "$t0")"
		t0=$(now); nsrun down one >/dev/null 2>&1; gone; sample "one-nsrun teardown" "$(since "$t0")"
		t0=$(now); one_ip_up; sample "one-ip setup" "$(since "$t0")"
		t0=$(now); ip netns del one; gone; sample "one-ip teardown" "$(since "$t0")"
	done
}

# kB of kernel memory in use (MemTotal - MemAvailable).
kmem() { awk '/^MemTotal/ {t = $2} /^MemAvailable/ {a = $2} END {print t - a}' /proc/meminfo; }
routed_gone() { while ip netns list 2>/dev/null | grep -qE '^(core|s[0-9]+-h[0-9]+)( |$)'; do sleep 0.05; done; }
run_routed() { # SEGMENTSxHOSTS
	local seg=${1%x*} per=${1#*x} n t0 m0 m1
	n=$((seg * per))
	routed_gone; sleep 1
	m0=$(kmem); t0=$(now)
	peak "$work/rss" nsrun -q --name routed "$here/routed.star" "$seg" "$per"
	sample "routed setup $n" "$(since "$t0")"
	sample "routed rss $n" "$(cat "$work/rss")"
	m1=$(kmem)
	sample "routed kmem $n" "$(((m1 - m0) / n))"
	t0=$(now); nsrun down routed >/dev/null 2>&1; routed_gone; sample "routed teardown $n" "$(since "$t0")"
	# The floor's own, for as many namespaces with IPv6 off, on bridges of
	# as many hosts.
	sleep 1
	sample "routed-floor setup $n" "$(floor_time -n "$n" -per "$per" -v4 setup)"
	sample "routed-floor teardown $n" "$(floor_time -n "$n" -per "$per" teardown)"; gone
}

median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
get() { echo "${times[$1]:-}" | median; }
ms() { [[ -n $1 ]] && echo "$1 * 1000 / $2" | bc -l | xargs printf '%.2f' || echo -; }
ratio() { [[ -n $1 && -n $2 ]] && echo "$1 / $2" | bc -l | xargs printf '%.2f' || echo -; }
sum() { [[ -n $1 && -n $2 ]] && echo "$1 + $2" | bc || true; }

has() { [[ " $2 " == *" $1 "* ]]; }
for ((r = 1; r <= rounds; r++)); do
	for n in $sizes; do
		echo "$place: N=$n round $r/$rounds" >&2
		methods="nsrun floor nsrun-v4 floor-v4"
		if has "$n" "$shell_sizes"; then
			methods="$methods shell batch"
			gen_shell "$n"
			gen_batch "$n"
		fi
		for m in $methods; do
			"run_$m" "$n"
			settle
		done
	done
	for n in $mininet_sizes; do
		[[ -z $mininet_skip ]] || break
		echo "$place: N=$n round $r/$rounds: nsrun and mininet" >&2
		has "$n" "$sizes" || { run_nsrun "$n"; settle; run_floor "$n"; settle; }
		run_mininet "$n"; settle
	done
done
echo "$place: the one-host lab" >&2
run_one; settle
for shape in $routed; do
	echo "$place: the routed lab $shape" >&2
	run_routed "$shape"
done

echo
if [[ $place == sandbox ]]; then echo "=== in a sandbox (a fresh network and mount namespace)"; else echo "=== in the machine's namespace"; fi
echo "per host, milliseconds (median of $rounds rounds)"
printf '%-6s %-9s %9s %9s %9s\n' N method setup teardown total
allsizes=$(echo $sizes $mininet_sizes | tr ' ' '\n' | sort -nu)
for n in $allsizes; do
	for m in nsrun floor nsrun-v4 floor-v4 shell batch; do
		s=$(get "$m setup $n"); t=$(get "$m teardown $n")
		[[ -n $s ]] || continue
		printf '%-6s %-9s %9s %9s %9s\n' "$n" "$m" "$(ms "$s" "$n")" "$(ms "$t" "$n")" "$(ms "$(sum "$s" "$t")" "$n")"
	done
	s=$(get "nsrun setup $n"); rb=$(get "nsrun rollback $n")
	[[ -z $rb ]] || printf '%-6s %-9s %9s %9s %9s\n' "$n" "nsrun-rb" "$(ms "$s" "$n")" "$(ms "$rb" "$n")" "$(ms "$(sum "$s" "$rb")" "$n")"
	b=$(get "mininet both $n")
	[[ -z $b ]] || printf '%-6s %-9s %9s %9s %9s\n' "$n" mininet - - "$(ms "$b" "$n")"
done
[[ -z $mininet_sizes || -z $mininet_skip ]] || echo "mininet: skipped: $mininet_skip"
echo
echo "the one-host lab, milliseconds (median of 21)"
printf '  %-28s %9s %9s\n' "" up down
printf '  %-28s %9s %9s\n' "nsrun bench/one.star; down" "$(ms "$(get "one-nsrun setup")" 1)" "$(ms "$(get "one-nsrun teardown")" 1)"
printf '  %-28s %9s %9s\n' "7 ip commands; ip netns del" "$(ms "$(get "one-ip setup")" 1)" "$(ms "$(get "one-ip teardown")" 1)"
if [[ -n $routed ]]; then
	echo
	echo "routed labs (bench/routed.star, IPv6 off; one run each)"
	printf '  %-7s %-6s %10s %10s %12s %12s %14s\n' hosts method setup-s teardown-s ms/host peak-MB kernel-kB/host
	for shape in $routed; do
		n=$((${shape%x*} * ${shape#*x}))
		s=$(get "routed setup $n")
		printf '  %-7s %-6s %10s %10s %12s %12s %14s\n' "$n" nsrun "$(printf %.1f "$s")" "$(printf %.1f "$(get "routed teardown $n")")" \
			"$(ms "$s" "$n")" "$(echo "$(get "routed rss $n") / 1024" | bc -l | xargs printf '%.1f')" "$(get "routed kmem $n")"
		s=$(get "routed-floor setup $n")
		printf '  %-7s %-6s %10s %10s %12s\n' "$n" floor "$(printf %.1f "$s")" "$(printf %.1f "$(get "routed-floor teardown $n")")" "$(ms "$s" "$n")"
	done
fi

echo
echo "targets (ratios measured in this run)"
check() { # description value op limit
	local ok=0
	[[ $2 != - ]] && ok=$(echo "$2 $3 $4" | bc -l)
	printf '  %-66s %7s  %s\n' "$1" "$2" "$([[ $ok == 1 ]] && echo ok || echo MISSED)"
}
for n in $sizes; do
	ns=$(get "nsrun setup $n"); nt=$(get "nsrun teardown $n")
	ft=$(get "floor teardown $n")
	echo " N=$n"
	check "setup nsrun/floor (<= 1.2)" "$(ratio "$ns" "$(get "floor setup $n")")" "<=" 1.2
	check "setup nsrun/floor, IPv6 off in the hosts (<= 1.2)" "$(ratio "$(get "nsrun-v4 setup $n")" "$(get "floor-v4 setup $n")")" "<=" 1.2
	check "teardown nsrun/floor batched (<= 1.2)" "$(ratio "$nt" "$ft")" "<=" 1.2
	check "rollback nsrun/floor batched teardown (<= 1.2)" "$(ratio "$(get "nsrun rollback $n")" "$ft")" "<=" 1.2
	if has "$n" "$shell_sizes"; then
		nboth=$(sum "$ns" "$nt")
		check "shell/nsrun, setup + teardown (>= 10)" "$(ratio "$(sum "$(get "shell setup $n")" "$(get "shell teardown $n")")" "$nboth")" ">=" 10
		check "ip-batch/nsrun, setup + teardown (>= 3)" "$(ratio "$(sum "$(get "batch setup $n")" "$(get "batch teardown $n")")" "$nboth")" ">=" 3
		printf '  %-66s %7s\n' "   the floor's own" "$(ratio "$(sum "$(get "batch setup $n")" "$(get "batch teardown $n")")" "$(sum "$(get "floor setup $n")" "$ft")")"
	fi
	rss=$(get "nsrun rss $n")
	[[ -z $rss ]] || check "nsrun peak memory, MB (< 100)" "$(echo "$rss / 1024" | bc -l | xargs printf '%.1f')" "<" 100
done
for n in $mininet_sizes; do
	[[ -z $mininet_skip ]] || { printf '  %-66s %7s  %s\n' "mininet/nsrun at N=$n" - "SKIPPED ($mininet_skip)"; continue; }
	check "mininet/nsrun at N=$n, build + teardown (>= 20)" "$(ratio "$(get "mininet both $n")" "$(sum "$(get "nsrun setup $n")" "$(get "nsrun teardown $n")")")" ">=" 20
	printf '  %-66s %7s\n' "   the floor's own" "$(ratio "$(get "mininet both $n")" "$(sum "$(get "floor setup $n")" "$(get "floor teardown $n")")")"
done
check "the one-host lab: nsrun/ip up + down (< 1)" "$(ratio "$(sum "$(get "one-nsrun setup")" "$(get "one-nsrun teardown")")" "$(sum "$(get "one-ip setup")" "$(get "one-ip teardown")")")" "<" 1
set -- $routed
if [[ $# -ge 2 ]]; then
	small=$1 big=${!#}
	ns=$((${small%x*} * ${small#*x})) nb=$((${big%x*} * ${big#*x}))
	check "routed lab: per-host setup, N=$nb over N=$ns (<= 1.5)" \
		"$(ratio "$(echo "$(get "routed setup $nb") / $nb" | bc -l)" "$(echo "$(get "routed setup $ns") / $ns" | bc -l)")" "<=" 1.5
	printf '  %-66s %7s\n' "   the floor's own, as many namespaces with IPv6 off" \
		"$(ratio "$(echo "$(get "routed-floor setup $nb") / $nb" | bc -l)" "$(echo "$(get "routed-floor setup $ns") / $ns" | bc -l)")"
	check "routed lab of $nb hosts: nsrun peak memory, MB (< 300)" "$(echo "$(get "routed rss $nb") / 1024" | bc -l | xargs printf '%.1f')" "<" 300
fi
