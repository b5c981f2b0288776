package spanstore

import (
	"errors"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ErrRejected marks an insert error as ClickHouse refusing the data
// itself: the same rows will be refused again, so retrying them only holds
// up the records behind them. Every other error (connection refused, a
// timeout, a read-only or overloaded server) is transient: the whole batch
// is retried later, nothing is given up.
var ErrRejected = errors.New("rejected by ClickHouse")

// rejectedCodes are ClickHouse exception codes that say the inserted data
// cannot be taken (ClickHouse's src/Common/ErrorCodes.cpp; the names are
// checked against the engine's errorCodeToName in TestRejectedCodes).
// Codes not listed are treated as transient: a server-side condition that
// clears (TOO_MANY_PARTS while merges catch up, MEMORY_LIMIT_EXCEEDED,
// TABLE_IS_READ_ONLY, ...) must never send good records to the dead
// letters.
var rejectedCodes = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	41:  "CANNOT_PARSE_DATETIME",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	131: "TOO_LARGE_STRING_SIZE",
	190: "SIZES_OF_ARRAYS_DONT_MATCH",
	321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
	395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
	407: "DECIMAL_OVERFLOW",
	469: "VIOLATED_CONSTRAINT",
}

// codeTooManyParts is TOO_MANY_PARTS: both "Too many partitions for single
// INSERT block" (the block's shape: splitting it helps) and "Too many
// parts" (merges are behind: waiting helps).
const codeTooManyParts = 252

// isRejected reports whether err is ClickHouse refusing the inserted rows
// rather than being unable to take any.
func isRejected(err error) bool {
	if errors.Is(err, ErrRejected) {
		return true
	}
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	if ex.Code == codeTooManyParts {
		return strings.Contains(ex.Message, "partitions for single INSERT")
	}
	_, ok := rejectedCodes[ex.Code]
	return ok
}
