//go:build !unix

package sentinel

import (
	"io"
	"net"
	"time"
)

// Outside Unix every connection takes the general loop.

type rawSource struct{}

func (*rawSource) Read([]byte) (int, error) { return 0, io.EOF }

func rawSourceFor(net.Conn) *rawSource { return nil }

func (c *conn) serveRaw() {}

var aLongTimeAgo = time.Unix(1, 0)
