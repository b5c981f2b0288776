package schemas

import "testing"

func BenchmarkDecodeCanonical(b *testing.B) {
	in := []byte(fullRecord)
	b.ReportAllocs()
	for b.Loop() {
		r, err := Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Canonical(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonicalize(b *testing.B) {
	r, _ := Decode([]byte(fullRecord))
	c, _ := r.Canonical()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonicalize(c); err != nil {
			b.Fatal(err)
		}
	}
}
