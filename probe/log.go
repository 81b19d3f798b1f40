package probe

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// RouteGoRedisLog sends go-redis's own log lines (for example one per
// failed dial of a failover command's connection) to logger at debug level
// instead of the standard error. go-redis has one
// logger per process, so the program calls this once, at startup.
func RouteGoRedisLog(logger *slog.Logger) {
	redis.SetLogger(goRedisLog{logger})
}

type goRedisLog struct{ logger *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, args ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, args...), "source", "go-redis")
}
