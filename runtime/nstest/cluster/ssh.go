package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The cluster's SSH files, in its directory: the client's key, with which
// root logs in to every machine, and the hosts the client knows.
const (
	clientKey      = "id_ed25519"
	authorizedKeys = "authorized_keys"
	knownHosts     = "known_hosts"
	sshConfig      = "ssh_config"
)

// keygen makes a fresh ed25519 key pair, without a passphrase, in c.Dir/name
// and name.pub, and returns the public key.
func (c *Cluster) keygen(name string) (string, error) {
	path := filepath.Join(c.Dir, name)
	cmd := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nsrun-cluster-"+name, "-f", path)
	if err := run(cmd); err != nil {
		return "", err
	}
	pub, err := os.ReadFile(path + ".pub")
	return strings.TrimSpace(string(pub)), err
}

// clientKey makes the client's key and authorizes it on every machine.
func (c *Cluster) clientKey() error {
	pub, err := c.keygen(clientKey)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, authorizedKeys), []byte(pub+"\n"), 0o600)
}

// writeSSHConfig makes each machine's host key, and writes the hosts the
// client knows and its configuration.
func (c *Cluster) writeSSHConfig() error {
	var b strings.Builder
	for _, m := range c.Machines {
		pub, err := c.keygen(m.Name + "-host_key")
		if err != nil {
			return err
		}
		c.hostKeys[m.Name] = pub
		fmt.Fprintf(&b, "Host %s\n", m.Name)
		for _, kv := range [][2]string{
			{"HostName", m.Addr.String()},
			{"User", "root"},
			{"IdentityFile", filepath.Join(c.Dir, clientKey)},
			{"IdentitiesOnly", "yes"},
			{"UserKnownHostsFile", filepath.Join(c.Dir, knownHosts)},
			{"GlobalKnownHostsFile", "/dev/null"},
			{"HostKeyAlias", m.Name},
			{"StrictHostKeyChecking", "yes"},
			{"BatchMode", "yes"},
			{"ConnectTimeout", "3"},
			{"LogLevel", "ERROR"},
		} {
			fmt.Fprintf(&b, "\t%s %s\n", kv[0], kv[1])
		}
	}
	if err := c.writeKnownHosts(); err != nil {
		return err
	}
	c.SSHConfig = filepath.Join(c.Dir, sshConfig)
	return os.WriteFile(c.SSHConfig, []byte(b.String()), 0o600)
}

// writeKnownHosts writes the hosts the client knows: each machine, by its
// name and its address, with the host key c.hostKeys has for it.
func (c *Cluster) writeKnownHosts() error {
	var b strings.Builder
	for _, m := range c.Machines {
		key := strings.Fields(c.hostKeys[m.Name]) // type, key, comment
		fmt.Fprintf(&b, "%s,%s %s %s\n", m.Name, m.Addr, key[0], key[1])
	}
	return os.WriteFile(filepath.Join(c.Dir, knownHosts), []byte(b.String()), 0o600)
}

// sshdConfig writes m's sshd configuration and returns its path: sshd
// listens on m's underlay address only, and lets root in with the client's
// key only. It has no PID file, and the SFTP server scp needs.
func (c *Cluster) sshdConfig(m *Machine) (string, error) {
	var b strings.Builder
	for _, kv := range [][2]string{
		{"ListenAddress", m.Addr.String()},
		{"Port", "22"},
		{"HostKey", filepath.Join(c.Dir, m.Name+"-host_key")},
		{"AuthorizedKeysFile", filepath.Join(c.Dir, authorizedKeys)},
		{"PermitRootLogin", "prohibit-password"},
		{"PasswordAuthentication", "no"},
		{"KbdInteractiveAuthentication", "no"},
		{"UsePAM", "no"},
		{"StrictModes", "no"},
		{"PidFile", "none"},
		{"PrintMotd", "no"},
		{"MaxStartups", "100"},
		{"Subsystem", "sftp internal-sftp"},
		{"LogLevel", "ERROR"},
	} {
		fmt.Fprintf(&b, "%s %s\n", kv[0], kv[1])
	}
	path := filepath.Join(c.Dir, m.Name+"-sshd_config")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// BadHostKey has the client know machine name by a fresh key, not the one
// its sshd has, so that ssh to it fails host key verification.
func (c *Cluster) BadHostKey(name string) {
	c.t.Helper()
	m := c.Machine(name)
	if _, ok := c.hostKeys[m.Name]; !ok {
		c.t.Fatalf("cluster: %s has no sshd, hence no host key", name)
	}
	c.bad++
	pub, err := c.keygen("bad_host_key" + strconv.Itoa(c.bad))
	if err == nil {
		c.hostKeys[m.Name] = pub
		err = c.writeKnownHosts()
	}
	if err != nil {
		c.t.Fatalf("cluster: %v", err)
	}
}
