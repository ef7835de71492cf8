package audit

import (
	"context"
	"strings"
	"testing"
)

// TestVerifyTampering builds a chain of 20 entries with a checkpoint at
// 12, tampers with it the way someone with write access to the table
// could, and checks that Verify names the first tampered entry and the
// kind of tampering.
func TestVerifyTampering(t *testing.T) {
	pki := newTestPKI(t, "sm2")
	tests := []struct {
		name     string
		tamper   func(t *testing.T, m *memLog)
		wantKind Kind
		wantSeq  int64
		// wantSeqs lists the sequence numbers of every problem, when it
		// matters that nothing else is reported.
		wantSeqs []int64
	}{
		{name: "intact"},
		{
			name:     "field changed",
			tamper:   func(t *testing.T, m *memLog) { m.entries[4].Principal = "mallory" },
			wantKind: KindAltered, wantSeq: 5, wantSeqs: []int64{5},
		},
		{
			name:     "time changed",
			tamper:   func(t *testing.T, m *memLog) { m.entries[15].Time = m.entries[15].Time.Add(-1) },
			wantKind: KindAltered, wantSeq: 16, wantSeqs: []int64{16},
		},
		{
			name: "field changed and its hash recomputed",
			tamper: func(t *testing.T, m *memLog) {
				e := m.entries[15]
				e.Outcome = OutcomeFailure
				if err := e.Seal(e.PrevHash); err != nil {
					t.Fatal(err)
				}
			},
			// Entry 17 still points at the old hash of 16.
			wantKind: KindAltered, wantSeq: 16, wantSeqs: []int64{16},
		},
		{
			name: "field changed and the rest of the chain rehashed",
			tamper: func(t *testing.T, m *memLog) {
				m.entries[3].Action = "certificate.unhold"
				m.rehashFrom(t, 3)
			},
			// Only the checkpoint at 12 can tell.
			wantKind: KindAltered, wantSeq: 12, wantSeqs: []int64{12},
		},
		{
			name:     "one deleted",
			tamper:   func(t *testing.T, m *memLog) { m.entries = append(m.entries[:6], m.entries[7:]...) },
			wantKind: KindDeleted, wantSeq: 7,
		},
		{
			name:     "several deleted",
			tamper:   func(t *testing.T, m *memLog) { m.entries = append(m.entries[:2], m.entries[9:]...) },
			wantKind: KindDeleted, wantSeq: 3,
		},
		{
			name:     "first deleted",
			tamper:   func(t *testing.T, m *memLog) { m.entries = m.entries[1:] },
			wantKind: KindDeleted, wantSeq: 1,
		},
		{
			name: "deleted and renumbered",
			tamper: func(t *testing.T, m *memLog) {
				m.entries = append(m.entries[:6], m.entries[7:]...)
				for _, e := range m.entries[6:] {
					e.Seq--
				}
				m.head.Seq--
			},
			// Entry 8 now sits at 7: its hash is valid only as 8.
			wantKind: KindReordered, wantSeq: 7,
		},
		{
			name: "two rows swapped",
			tamper: func(t *testing.T, m *memLog) {
				a, b := m.entries[8], m.entries[9]
				a.Seq, b.Seq = b.Seq, a.Seq
			},
			wantKind: KindReordered, wantSeq: 9, wantSeqs: []int64{9, 10},
		},
		{
			name: "contents swapped, numbers kept",
			tamper: func(t *testing.T, m *memLog) {
				a, b := m.entries[2], m.entries[5]
				sa, sb := *a, *b
				*a, *b = sb, sa
				a.Seq, b.Seq = 3, 6
			},
			wantKind: KindReordered, wantSeq: 3, wantSeqs: []int64{3, 6},
		},
		{
			name:     "tail cut, head kept",
			tamper:   func(t *testing.T, m *memLog) { m.entries = m.entries[:17] },
			wantKind: KindTruncated, wantSeq: 18, wantSeqs: []int64{18},
		},
		{
			name: "tail cut below the checkpoint, head moved back",
			tamper: func(t *testing.T, m *memLog) {
				m.entries = m.entries[:10]
				m.head = Head{Seq: 10, Hash: m.entries[9].Hash}
			},
			wantKind: KindTruncated, wantSeq: 11, wantSeqs: []int64{11},
		},
		{
			name: "last entry rewritten and rehashed, head kept",
			tamper: func(t *testing.T, m *memLog) {
				e := m.entries[19]
				e.Object = "certificate/issuing/other"
				if err := e.Seal(e.PrevHash); err != nil {
					t.Fatal(err)
				}
			},
			wantKind: KindAltered, wantSeq: 20, wantSeqs: []int64{20},
		},
		{
			name: "entry added beyond the head",
			tamper: func(t *testing.T, m *memLog) {
				h := m.head
				m.append(t, "mallory", "certificate.issue")
				m.head = h
			},
			wantKind: KindAltered, wantSeq: 21,
		},
		{
			name:     "checkpoint signature broken",
			tamper:   func(t *testing.T, m *memLog) { m.checkpoints[0].Signature[10] ^= 1 },
			wantKind: KindCheckpoint, wantSeq: 12, wantSeqs: []int64{12},
		},
		{
			name: "checkpoint re-signed by an untrusted key",
			tamper: func(t *testing.T, m *memLog) {
				other := newTestPKI(t, "sm2")
				cp, err := SignCheckpoint(other.signer, other.signerCert, Head{Seq: 12, Hash: m.entries[11].Hash}, t0)
				if err != nil {
					t.Fatal(err)
				}
				m.checkpoints[0] = cp
			},
			wantKind: KindCheckpoint, wantSeq: 12,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemLog(t, 12)
			pki.checkpoint(t, m)
			for i := 0; i < 8; i++ {
				m.append(t, "bob", "certificate.revoke")
			}
			if tt.tamper != nil {
				tt.tamper(t, m)
			}
			rep, err := Verify(context.Background(), m, pki.verifier())
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantKind == "" {
				if !rep.OK() || rep.Entries != 20 || rep.Checkpoints != 1 || rep.LastCheckpoint != 12 {
					t.Fatalf("intact chain: %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			first := rep.First()
			if first.Kind != tt.wantKind || first.Seq != tt.wantSeq {
				t.Fatalf("first problem %v, want %s at %d (all: %v)", first, tt.wantKind, tt.wantSeq, rep.Problems)
			}
			if tt.wantSeqs != nil {
				var got []int64
				for _, p := range rep.Problems {
					got = append(got, p.Seq)
				}
				if len(got) != len(tt.wantSeqs) {
					t.Fatalf("problems %v, want at %v", rep.Problems, tt.wantSeqs)
				}
				for i := range got {
					if got[i] != tt.wantSeqs[i] {
						t.Fatalf("problems %v, want at %v", rep.Problems, tt.wantSeqs)
					}
				}
			}
			if !strings.Contains(first.String(), string(tt.wantKind)) {
				t.Errorf("String() = %q", first.String())
			}
		})
	}
}

func TestVerifyEmptyAndNoVerifier(t *testing.T) {
	m := &memLog{}
	rep, err := Verify(context.Background(), m, nil)
	if err != nil || !rep.OK() || rep.Entries != 0 {
		t.Fatalf("empty log: %+v %v", rep, err)
	}
	// Without a checkpoint verifier a forged checkpoint is not noticed,
	// but the chain still is checked.
	m = newMemLog(t, 5)
	m.entries[2].Details = `{"x":1}`
	rep, err = Verify(context.Background(), m, nil)
	if err != nil || rep.OK() || rep.First().Seq != 3 {
		t.Fatalf("altered entry without verifier: %+v %v", rep, err)
	}
}

// TestVerifyConcurrentAppend: entries appended after the first pass (the
// head read at the end is ahead) are picked up, not reported as missing.
func TestVerifyConcurrentAppend(t *testing.T) {
	m := newMemLog(t, 5)
	src := &appendingSource{memLog: m, t: t}
	rep, err := Verify(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.LastSeq != 6 || rep.Head.Seq != 6 {
		t.Fatalf("report %+v", rep)
	}
}

// appendingSource appends one entry when the head is first read, as a
// concurrent writer would between the walk and the head read.
type appendingSource struct {
	*memLog
	t    *testing.T
	done bool
}

func (s *appendingSource) AuditHead(ctx context.Context) (Head, error) {
	if !s.done {
		s.done = true
		s.append(s.t, "carol", "token.create")
	}
	return s.memLog.AuditHead(ctx)
}

func TestVerifyProblemCap(t *testing.T) {
	m := newMemLog(t, MaxProblems+10)
	for _, e := range m.entries {
		e.Principal = "x"
	}
	rep, err := Verify(context.Background(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != MaxProblems || !rep.MoreProblems || rep.Entries != int64(MaxProblems+10) {
		t.Fatalf("problems %d more %v entries %d", len(rep.Problems), rep.MoreProblems, rep.Entries)
	}
}

func BenchmarkVerify(b *testing.B) {
	m := newMemLog(b, 10000)
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(context.Background(), m, nil)
		if err != nil || !rep.OK() {
			b.Fatal(rep, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/entry")
}
