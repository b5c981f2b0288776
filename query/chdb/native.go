package chdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// reframeNative rewrites Native output written for protocol revision 0
// (what the embedded engine produces) into the framing a ClickHouse
// server's HTTP interface uses for a client that announced revision rev:
// block info before each block and a custom-serialization flag per column.
// clickhouse-go decodes HTTP results at the revision it announced, so
// without this the embedded engine's answers would not parse.
//
// The blocks are decoded and re-encoded with clickhouse-go's own block
// codec, so the column encodings stay the library's, not ours.
func reframeNative(out []byte, rev uint64) ([]byte, error) {
	if rev == 0 || len(out) == 0 {
		return out, nil
	}
	r := chproto.NewReader(bytes.NewReader(out))
	var buf chproto.Buffer
	for {
		b := proto.NewBlock()
		b.ServerContext.Timezone = time.UTC
		if err := b.Decode(r, 0); err != nil {
			if errors.Is(err, io.EOF) {
				return buf.Buf, nil
			}
			return nil, fmt.Errorf("decode Native block from the engine: %w", err)
		}
		if err := b.Encode(&buf, rev); err != nil {
			return nil, fmt.Errorf("encode Native block at revision %d: %w", rev, err)
		}
	}
}

func parseRevision(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return v
}
