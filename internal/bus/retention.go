package bus

import (
	"strconv"
	"strings"
	"time"
)

// legacyMaxAge is how long a limits-retained stream keeps records when no
// --stream-max-age is given: on servers where interest retention is not
// used (see interestRetentionSafe), a signer down for longer than this
// loses the records it had not logged.
const legacyMaxAge = 7 * 24 * time.Hour

// interestRetentionSafe reports whether a nats-server of this version
// keeps an interest-retained stream's unacknowledged records across a
// restart. nats-server 2.9.10 (Debian 12's package) does not: restarted
// under load, it dropped records the signer had not acknowledged, every
// time (TestExternalNATS). 2.10.29, 2.11.12 and 2.15.2 kept them; older
// 2.10 releases were not tried, so they get the limits retention too.
func interestRetentionSafe(version string) bool {
	v := [3]int{}
	for i, part := range strings.SplitN(version, ".", 3) {
		// Keep the leading digits of each part: "0-RC.1" is 0.
		end := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			part = part[:end]
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return false
		}
		v[i] = n
	}
	min := [3]int{2, 10, 29}
	for i := range v {
		if v[i] != min[i] {
			return v[i] > min[i]
		}
	}
	return true
}
