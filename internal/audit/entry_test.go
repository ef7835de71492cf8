package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	tjsm3 "github.com/tjfoc/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func sampleEntry() Entry {
	return Entry{
		Seq: 7, Time: time.Date(2025, 3, 1, 8, 0, 0, 123456789, time.UTC),
		Principal: "czt-ra", Action: "certificate.revoke", Object: "certificate/issuing/3f2a",
		Outcome: OutcomeSuccess, RequestID: "req-1", Details: `{"reason":"keyCompromise"}`,
		PrevHash: bytes.Repeat([]byte{0xab}, HashSize),
	}
}

// TestEncodeStructure decodes the hashed encoding field by field: the
// format is what every stored hash depends on.
func TestEncodeStructure(t *testing.T) {
	e := sampleEntry()
	der, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		t.Fatal("not one DER SEQUENCE")
	}
	var version, num, at int64
	if !seq.ReadASN1Integer(&version) || !seq.ReadASN1Integer(&num) || !seq.ReadASN1Integer(&at) {
		t.Fatal("integers")
	}
	if version != 1 || num != e.Seq || at != e.Time.UnixNano() {
		t.Fatalf("version %d seq %d time %d", version, num, at)
	}
	for _, want := range []string{e.Principal, e.Action, e.Object, e.Outcome, e.RequestID, e.Details} {
		var s cryptobyte.String
		if !seq.ReadASN1(&s, cbasn1.UTF8String) || string(s) != want {
			t.Fatalf("field %q: got %q", want, s)
		}
	}
	var prev []byte
	if !seq.ReadASN1Bytes(&prev, cbasn1.OCTET_STRING) || !bytes.Equal(prev, e.PrevHash) || !seq.Empty() {
		t.Fatal("prevHash")
	}
}

// TestHashIndependent checks the SM3 against tjfoc/gmsm, another
// implementation.
func TestHashIndependent(t *testing.T) {
	e := sampleEntry()
	der, _ := e.Encode()
	got, err := e.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	if want := tjsm3.Sm3Sum(der); !bytes.Equal(got, want) {
		t.Fatalf("SM3 %x, tjfoc %x", got, want)
	}
}

// TestHashCoversEveryField changes one field at a time; each change must
// change the hash, including moving bytes between adjacent fields.
func TestHashCoversEveryField(t *testing.T) {
	base := sampleEntry()
	h0, _ := base.ComputeHash()
	tests := []struct {
		name string
		mod  func(e *Entry)
	}{
		{"seq", func(e *Entry) { e.Seq++ }},
		{"time", func(e *Entry) { e.Time = e.Time.Add(time.Nanosecond) }},
		{"principal", func(e *Entry) { e.Principal += "x" }},
		{"action", func(e *Entry) { e.Action = "certificate.unhold" }},
		{"object", func(e *Entry) { e.Object = "certificate/issuing/3f2b" }},
		{"outcome", func(e *Entry) { e.Outcome = OutcomeDenied }},
		{"request id", func(e *Entry) { e.RequestID = "" }},
		{"details", func(e *Entry) { e.Details = `{"reason":"superseded"}` }},
		{"prev hash", func(e *Entry) { e.PrevHash = bytes.Repeat([]byte{0xac}, HashSize) }},
		{"byte moved between fields", func(e *Entry) { e.Principal, e.Action = "czt-r", "acertificate.revoke" }},
	}
	for _, tt := range tests {
		e := sampleEntry()
		tt.mod(&e)
		h, err := e.ComputeHash()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if bytes.Equal(h, h0) {
			t.Errorf("%s: hash unchanged", tt.name)
		}
	}
}

func TestSealAndVerify(t *testing.T) {
	e := sampleEntry()
	e.Details = ""
	prev := GenesisHash()
	if err := e.Seal(prev); err != nil {
		t.Fatal(err)
	}
	if e.Details != "{}" || !bytes.Equal(e.PrevHash, prev) || !e.Verify() {
		t.Fatalf("sealed entry %+v does not verify", e)
	}
	prev[0] = 1 // Seal must have copied it
	if !e.Verify() {
		t.Fatal("Seal kept a reference to the caller's slice")
	}
	e.Object += "!"
	if e.Verify() {
		t.Fatal("altered entry verifies")
	}
}

func TestSealRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(e *Entry)
		prev []byte
	}{
		{"seq 0", func(e *Entry) { e.Seq = 0 }, GenesisHash()},
		{"short prev", func(e *Entry) {}, make([]byte, 16)},
		{"no action", func(e *Entry) { e.Action = "" }, GenesisHash()},
		{"no outcome", func(e *Entry) { e.Outcome = "" }, GenesisHash()},
		{"huge details", func(e *Entry) { e.Details = `{"x":"` + strings.Repeat("a", MaxDetailsLen) + `"}` }, GenesisHash()},
		{"invalid UTF-8 details", func(e *Entry) { e.Details = "{\"x\":\"\xff\"}" }, GenesisHash()},
	}
	for _, tt := range tests {
		e := sampleEntry()
		tt.mod(&e)
		if err := e.Seal(tt.prev); err == nil {
			t.Errorf("%s: sealed", tt.name)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"alice", 10, "alice"},
		{"a\x00b", 10, "a\uFFFDb"},
		{"a\xffb", 10, "a\uFFFDb"},
		{"张三丰", 7, "张三"}, // 3 bytes each: cut before the third rune
		{"abcdef", 3, "abc"},
	}
	for _, tt := range tests {
		got := Clean(tt.in, tt.max)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("Clean(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestActor(t *testing.T) {
	ctx := context.Background()
	if a, ok := ActorFrom(ctx); ok || a.Principal != SystemPrincipal {
		t.Fatalf("no actor: %+v %v", a, ok)
	}
	if a, ok := ActorFrom(WithActor(ctx, Actor{RequestID: "r"})); ok || a.Principal != SystemPrincipal || a.RequestID != "r" {
		t.Fatalf("empty principal: %+v %v", a, ok)
	}
	want := Actor{Principal: "alice", RequestID: "r1", Source: "10.0.0.1"}
	if a, ok := ActorFrom(WithActor(ctx, want)); !ok || a != want {
		t.Fatalf("actor: %+v %v", a, ok)
	}
}
