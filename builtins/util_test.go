package builtins_test

import "fmt"

func fmtSscan(s string, v *int) (int, error) { return fmt.Sscan(s, v) }

func fmtSscanf(hex string, b *byte) (int, error) { return fmt.Sscanf(hex, "%02x", b) }
