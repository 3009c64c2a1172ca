module github.com/nsrun/nsrun

go 1.26.8

require (
	github.com/spf13/pflag v1.1.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	go.starlark.net v0.0.0-20260908191801-89a6a09411d5
	golang.org/x/sys v0.45.0
)
