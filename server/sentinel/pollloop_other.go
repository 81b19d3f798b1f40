//go:build !linux

package sentinel

// Outside Linux there is no poll loop: every connection has a goroutine.

type pollLoop struct{}

func newPollLoop(*Server) *pollLoop { return nil }

func (*pollLoop) add(*conn) bool { return false }
func (*pollLoop) run()           {}
func (*pollLoop) stop()          {}

type fdWriter struct{}

func shutdownLoopFD(int) {}
