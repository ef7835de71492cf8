package audit

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"fmt"
	"iter"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/internal/sigalg"
)

var t0 = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

// memLog is an in-memory Source and CheckpointStore. Tests tamper with
// its slices directly, as an attacker would with the database rows.
type memLog struct {
	entries     []*Entry
	head        Head
	checkpoints []*Checkpoint
}

func (m *memLog) append(t testing.TB, principal, action string) *Entry {
	t.Helper()
	prev := GenesisHash()
	if m.head.Seq > 0 {
		prev = m.head.Hash
	}
	e := &Entry{Seq: m.head.Seq + 1, Time: t0.Add(time.Duration(m.head.Seq) * time.Second), Principal: principal,
		Action: action, Object: fmt.Sprintf("certificate/issuing/%x", m.head.Seq+1), Outcome: OutcomeSuccess}
	if err := e.Seal(prev); err != nil {
		t.Fatal(err)
	}
	m.entries = append(m.entries, e)
	m.head = Head{Seq: e.Seq, Hash: e.Hash}
	return e
}

func newMemLog(t testing.TB, n int) *memLog {
	m := &memLog{}
	for i := 0; i < n; i++ {
		m.append(t, "alice", "certificate.issue")
	}
	return m
}

func (m *memLog) AuditHead(context.Context) (Head, error) { return m.head, nil }

func (m *memLog) AuditEntries(_ context.Context, after int64) iter.Seq2[*Entry, error] {
	sorted := slices.Clone(m.entries)
	slices.SortStableFunc(sorted, func(a, b *Entry) int { return int(a.Seq - b.Seq) })
	return func(yield func(*Entry, error) bool) {
		for _, e := range sorted {
			if e.Seq <= after {
				continue
			}
			c := *e
			if !yield(&c, nil) {
				return
			}
		}
	}
}

func (m *memLog) AuditCheckpoints(context.Context) iter.Seq2[*Checkpoint, error] {
	return func(yield func(*Checkpoint, error) bool) {
		for _, cp := range m.checkpoints {
			if !yield(cp, nil) {
				return
			}
		}
	}
}

func (m *memLog) LatestCheckpoint(context.Context) (*Checkpoint, error) {
	if len(m.checkpoints) == 0 {
		return nil, nil
	}
	return m.checkpoints[len(m.checkpoints)-1], nil
}

func (m *memLog) InsertCheckpoint(_ context.Context, cp *Checkpoint) error {
	for _, c := range m.checkpoints {
		if c.Seq == cp.Seq {
			return ErrCheckpointExists
		}
	}
	m.checkpoints = append(m.checkpoints, cp)
	return nil
}

// rehashFrom recomputes the hashes of entries from index i on, as an
// attacker who knows the algorithm would, and moves the head.
func (m *memLog) rehashFrom(t testing.TB, i int) {
	t.Helper()
	prev := GenesisHash()
	if i > 0 {
		prev = m.entries[i-1].Hash
	}
	for _, e := range m.entries[i:] {
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	last := m.entries[len(m.entries)-1]
	m.head = Head{Seq: last.Seq, Hash: last.Hash}
}

// testPKI is a root CA and an audit signer certificate issued by it.
type testPKI struct {
	root       *smx509.Certificate
	signer     crypto.Signer
	signerCert []byte
}

func newTestPKI(t testing.TB, alg string) *testPKI {
	t.Helper()
	rootKey, err := sigalg.GenerateKey(rand.Reader, alg)
	if err != nil {
		t.Fatal(err)
	}
	rootTmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
	}
	rootDER, err := smx509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, err := smx509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sigalg.GenerateKey(rand.Reader, alg)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Audit Log Signer"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.AddDate(1, 0, 0),
		KeyUsage: smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment,
	}
	leafDER, err := smx509.CreateCertificate(rand.Reader, leafTmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{root: root, signer: key, signerCert: leafDER}
}

func (p *testPKI) verifier() *CertVerifier {
	return &CertVerifier{Roots: []*smx509.Certificate{p.root}}
}

func (p *testPKI) keySource() KeySource {
	return func(context.Context) (crypto.Signer, []byte, error) { return p.signer, p.signerCert, nil }
}

// checkpoint signs the current head of m.
func (p *testPKI) checkpoint(t testing.TB, m *memLog) *Checkpoint {
	t.Helper()
	c := NewCheckpointer(m, p.keySource(), func() time.Time { return t0.Add(time.Hour) }, nil)
	cp, err := c.Checkpoint(context.Background())
	if err != nil || cp == nil {
		t.Fatalf("checkpoint: %v %v", cp, err)
	}
	return cp
}
