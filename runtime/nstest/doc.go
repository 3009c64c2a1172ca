// Package nstest runs a package's tests inside a sandbox — a fresh network
// namespace and a private mount namespace — and checks that each real-kernel
// test leaves nothing behind. Use it from TestMain:
//
//	func TestMain(m *testing.M) { nstest.Main(m) }
//
// and in each test that needs the kernel:
//
//	nstest.Kernel(t) // skips unless root; fails the test on leftovers
package nstest
