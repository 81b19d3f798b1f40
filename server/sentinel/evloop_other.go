//go:build !linux

package sentinel

// Outside Linux there is no event loop: every connection has a goroutine.

type evloop struct{}

func newEventLoop(*Server) *evloop { return nil }

func (*evloop) add(*conn) bool { return false }
func (*evloop) run()           {}
func (*evloop) stop()          {}

type fdWriter struct{}

func shutdownLoopFD(int) {}
