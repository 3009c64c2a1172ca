package kernel

import (
	"fmt"
	"os"
	"strings"
)

// The Recorder's model of NAT tables (Recorder.nat): the comments of each
// table's rules, keyed by the namespace's inode, so that a namespace deleted
// and made again starts empty.
type recNATKey struct {
	ns            string
	ino           uint64
	family, table string
}

func (r *Recorder) natKey(ns, family, table string) (recNATKey, bool) {
	if ns == Host {
		return recNATKey{family: family, table: table}, true
	}
	ino, ok := r.netns[ns]
	return recNATKey{ns, ino, family, table}, ok
}

func nftIn(ns string) string {
	if ns == Host {
		return "nft"
	}
	return "ip netns exec " + ns + " nft"
}

func (r *Recorder) NATTable(ns, family, table string) error {
	if _, err := nftFamily(family); err != nil {
		return err
	}
	key, ok := r.natKey(ns, family, table)
	if !ok {
		return fmt.Errorf("netns %q: %w", ns, ErrNotFound)
	}
	if r.nat == nil {
		r.nat = map[recNATKey][]string{}
	}
	if _, ok := r.nat[key]; ok {
		return fmt.Errorf("nftables table %s %s in netns %q: %w", family, table, NSArg(ns), os.ErrExist)
	}
	cmd := fmt.Sprintf("%s create table %s %s", nftIn(ns), family, table)
	for _, ch := range natChains {
		cmd += fmt.Sprintf("; %s add chain %s %s %s '{ %s }'", nftIn(ns), family, table, ch.name, ch.spec)
	}
	if err := r.change("%s", cmd); err != nil {
		return err
	}
	r.nat[key] = []string{}
	return nil
}

func (r *Recorder) NATRule(ns, family, table string, rule NATRule) error {
	fam, err := nftFamily(family)
	if err != nil {
		return err
	}
	if _, err := natExprs(fam, rule); err != nil {
		return err
	}
	key, _ := r.natKey(ns, family, table)
	rules, ok := r.nat[key]
	if !ok {
		return fmt.Errorf("nftables table %s %s in netns %q: %w", family, table, NSArg(ns), ErrNotFound)
	}
	var cmds []string
	for _, ch := range rule.chains() {
		// One argument, as nft reads it: its quotes are nft's, not the shell's.
		cmds = append(cmds, fmt.Sprintf("%s %s", nftIn(ns), quoteArg(fmt.Sprintf("add rule %s %s %s %s", family, table, ch, rule))))
	}
	if err := r.change("%s", strings.Join(cmds, "; ")); err != nil {
		return err
	}
	r.nat[key] = append(rules, rule.Comment)
	return nil
}

func (r *Recorder) NATRuleDel(ns, family, table, comment string) error {
	key, ok := r.natKey(ns, family, table)
	if !ok {
		return nil
	}
	rules, ok := r.nat[key]
	if !ok {
		return nil
	}
	var kept []string
	for _, c := range rules {
		if c != comment {
			kept = append(kept, c)
		}
	}
	if len(kept) == len(rules) {
		return nil
	}
	// nft deletes rules by handle: those of the rules with that comment,
	// each in its chain, are read from the table's listing.
	nft := nftIn(ns)
	list := fmt.Sprintf(`%s -a list table %s %s | awk -v m=%s '$1 == "chain" { c = $2 } index($0, m) { print c, $NF }'`,
		nft, family, table, quoteArg(fmt.Sprintf(`comment %q # handle `, comment)))
	if err := r.change("%s | while read c h; do %s delete rule %s %s $c handle $h; done", list, nft, family, table); err != nil {
		return err
	}
	r.nat[key] = append([]string{}, kept...)
	return nil
}

func (r *Recorder) NATDelTable(ns, family, table string) error {
	key, ok := r.natKey(ns, family, table)
	if !ok {
		return nil
	}
	if _, ok := r.nat[key]; !ok {
		return nil
	}
	if err := r.change("%s delete table %s %s", nftIn(ns), family, table); err != nil {
		return err
	}
	delete(r.nat, key)
	return nil
}
