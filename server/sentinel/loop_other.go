//go:build !(linux && (amd64 || arm64))

package sentinel

// pollLoop is Linux's (loop_linux.go); elsewhere every connection keeps a
// goroutine of its own.
type pollLoop struct{}

func newPollLoop(*Server) *pollLoop { return nil }

func (*pollLoop) run()            {}
func (*pollLoop) stop()           {}
func (*pollLoop) park(*conn) bool { return false }
func (*pollLoop) remove(*conn)    {}
