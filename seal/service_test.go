package seal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
)

// memStore is an in-memory Store that applies the same rules as the
// database one (active seal, good holder certificate and a grant for a
// stamp to be recorded).
type memStore struct {
	mu     sync.Mutex
	seals  map[string]*Record
	grants map[grantKey]Grant
	stamps []StampRecord
	certs  func(serial string) ca.Status // holder certificate status
}

func newMemStore(certs func(string) ca.Status) *memStore {
	return &memStore{seals: map[string]*Record{}, grants: map[grantKey]Grant{}, certs: certs}
}

func (m *memStore) InsertSeal(_ context.Context, r *Record, grants []Grant) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.seals {
		if s.ESID == r.ESID || s.ID == r.ID {
			return ErrDuplicate
		}
	}
	cp := *r
	m.seals[r.ID] = &cp
	for _, g := range grants {
		m.grants[grantKey{g.SealID, g.Principal}] = g
	}
	return nil
}

func (m *memStore) get(id string) (*Record, error) {
	s, ok := m.seals[id]
	if !ok {
		return nil, fmt.Errorf("seal %s: %w", id, ErrNotFound)
	}
	cp := *s
	return &cp, nil
}

func (m *memStore) Seal(_ context.Context, id string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(id)
}

func (m *memStore) SealByESID(_ context.Context, esID string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.seals {
		if s.ESID == esID {
			return m.get(id)
		}
	}
	return nil, ErrNotFound
}

func (m *memStore) Seals(_ context.Context, f Filter) ([]Record, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for _, s := range m.seals {
		if (f.Department == "" || s.Department == f.Department) && (f.Status == 0 || s.Status == f.Status) {
			out = append(out, *s)
		}
	}
	return out, "", nil
}

func (m *memStore) HolderKeyRef(_ context.Context, caID, serial string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.seals {
		if s.HolderCAID == caID && s.HolderSerial == serial {
			return s.HolderKeyRef, nil
		}
	}
	return "", ErrNotFound
}

func (m *memStore) SetSealStatus(_ context.Context, ch StatusChange) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.seals[ch.ID]
	if !ok {
		return nil, ErrNotFound
	}
	if !slices.Contains(ch.From, s.Status) {
		cp := *s
		return &cp, ErrStateConflict
	}
	s.Status, s.StatusChangedAt, s.StatusChangedBy = ch.To, ch.At, ch.By
	if ch.To == SealRevoked {
		s.RevocationReason = ch.Reason
	}
	cp := *s
	return &cp, nil
}

func (m *memStore) AddGrant(_ context.Context, g Grant) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seals[g.SealID]; !ok {
		return ErrNotFound
	}
	m.grants[grantKey{g.SealID, g.Principal}] = g
	return nil
}

func (m *memStore) DeleteGrant(_ context.Context, sealID, principal string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := grantKey{sealID, principal}
	if _, ok := m.grants[k]; !ok {
		return ErrNotFound
	}
	delete(m.grants, k)
	return nil
}

func (m *memStore) Grants(_ context.Context, sealID string) ([]Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Grant
	for k, g := range m.grants {
		if k.sealID == sealID {
			out = append(out, g)
		}
	}
	return out, nil
}

func (m *memStore) Granted(_ context.Context, sealID, principal string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.grants[grantKey{sealID, principal}]
	return ok, nil
}

func (m *memStore) InsertStamp(_ context.Context, st *StampRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.seals[st.SealID]
	_, granted := m.grants[grantKey{st.SealID, st.Principal}]
	if !ok || !granted || s.Status != SealActive || m.certs(s.HolderSerial) != ca.StatusGood {
		return ErrStampRefused
	}
	m.stamps = append(m.stamps, *st)
	return nil
}

func (m *memStore) Stamps(_ context.Context, f StampFilter) ([]StampRecord, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StampRecord
	for _, s := range m.stamps {
		if s.SealID == f.SealID && (f.Principal == "" || s.Principal == f.Principal) {
			out = append(out, s)
		}
	}
	return out, "", nil
}

func (m *memStore) StampBySignature(_ context.Context, value []byte) (*StampRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.stamps {
		if bytes.Equal(s.Signature, value) {
			cp := s
			return &cp, nil
		}
	}
	return nil, ErrNotFound
}

// memKeys is an in-memory key manager.
type memKeys struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

func (k *memKeys) CreateKey(_ context.Context, label string, alg hsm.Algorithm) (string, crypto.PublicKey, error) {
	if alg != hsm.SM2 {
		return "", nil, fmt.Errorf("memKeys: %s", alg)
	}
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	ref := "mem:" + label
	if _, ok := k.keys[ref]; ok {
		return "", nil, hsm.ErrKeyExists
	}
	k.keys[ref] = key
	return ref, key.Public(), nil
}

func (k *memKeys) Signer(_ context.Context, ref string) (crypto.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.keys[ref]
	if !ok {
		return nil, hsm.ErrKeyNotFound
	}
	return s, nil
}

// fakeCA issues from the test root of a testPKI and keeps the records.
type fakeCA struct {
	t       testing.TB
	p       *testPKI
	keys    *memKeys
	now     func() time.Time
	mu      sync.Mutex
	certs   map[string]*ca.Certificate
	signers []ca.SignerRecord // newest first
	renewed int
}

func (f *fakeCA) issue(pub crypto.PublicKey, cn, org, profile, dept string, validity time.Duration) *ca.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	now := f.now().UTC().Truncate(time.Second)
	tmpl := &smx509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment,
	}
	tmpl.Subject.CommonName, tmpl.Subject.Organization = cn, []string{org}
	root, _ := smx509.ParseCertificate(f.p.rootDER)
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, root, pub, f.p.rootKey)
	if err != nil {
		f.t.Fatal(err)
	}
	c := &ca.Certificate{CAID: "issuing", Serial: ca.SerialFromBig(serial), Profile: profile, Department: dept, Status: ca.StatusGood,
		NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter, DER: der}
	f.mu.Lock()
	f.certs[c.Serial] = c
	f.mu.Unlock()
	return c
}

func (f *fakeCA) IssueForKey(_ context.Context, req ca.KeyIssueRequest) (*ca.Issued, error) {
	if req.Profile != ProfileSealSigner {
		return nil, fmt.Errorf("unexpected profile %s", req.Profile)
	}
	return &ca.Issued{Certificate: f.issue(req.PublicKey, req.Subject.CommonName, req.Subject.Organization[0], req.Profile, req.Department, req.Validity)}, nil
}

func (f *fakeCA) RenewDelegatedSigner(ctx context.Context, purpose string) (*ca.SignerRecord, *ca.Certificate, error) {
	ref, pub, err := f.keys.CreateKey(ctx, fmt.Sprintf("maker-%d", f.renewed), hsm.SM2)
	if err != nil {
		return nil, nil, err
	}
	c := f.issue(pub, "Seal Maker", "测试单位", "seal-maker", "", 3*365*24*time.Hour)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewed++
	r := ca.SignerRecord{ID: fmt.Sprintf("maker-%d", f.renewed), CAID: "issuing", Purpose: purpose, KeyRef: ref, DER: c.DER,
		Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter}
	f.signers = append([]ca.SignerRecord{r}, f.signers...)
	return &r, c, nil
}

func (f *fakeCA) Find(_ context.Context, serial string) (*ca.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.certs[serial]
	if !ok {
		return nil, ca.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

func (f *fakeCA) Signers(_ context.Context, purpose string) ([]ca.SignerRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.signers), nil
}

func (f *fakeCA) setStatus(serial string, st ca.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs[serial].Status = st
}

func (f *fakeCA) status(serial string) ca.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.certs[serial]; ok {
		return c.Status
	}
	return ""
}

// movingClock starts at tSign and moves when told.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *movingClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type serviceEnv struct {
	p     *testPKI
	svc   *Service
	store *memStore
	ca    *fakeCA
	keys  *memKeys
	clock *movingClock
}

func newServiceEnv(t testing.TB) *serviceEnv {
	t.Helper()
	p := newTestPKI(t)
	clk := &movingClock{t: tSign}
	keys := &memKeys{keys: map[string]crypto.Signer{}}
	fca := &fakeCA{t: t, p: p, keys: keys, now: clk.Now, certs: map[string]*ca.Certificate{}}
	st := newMemStore(fca.status)
	v := NewVerifier(VerifierOptions{Registry: st, Trust: mustTrust(t, p.rootDER), Revocation: &fakeRevocation{}, Now: clk.Now})
	svc, err := NewService(Config{ESIDPrefix: "440300"}, Deps{Store: st, Authority: fca, Signers: fca, Keys: keys, Verifier: v, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &serviceEnv{p: p, svc: svc, store: st, ca: fca, keys: keys, clock: clk}
}

var (
	admin     = Caller{Name: "admin", Roles: []string{RoleAdmin}}
	approval  = Caller{Name: "oa", Roles: []string{"approval-system"}}
	testMakes = MakeRequest{Name: "测试单位 合同专用章", Type: "contract", Department: "czt", ValidDays: 365}
)

func (e *serviceEnv) make(t testing.TB, mod func(*MakeRequest)) *Made {
	t.Helper()
	req := testMakes
	req.Picture = PictureInput{Type: "PNG", Data: testPNG(t), WidthMM: 40, HeightMM: 40}
	req.Grants = []string{"oa"}
	if mod != nil {
		mod(&req)
	}
	m, err := e.svc.Make(context.Background(), admin, req)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
	}{
		{"organization", TypeOrganization}, {"Organisation", TypeOrganization}, {"personal", TypePersonal},
		{"invoice", TypeInvoice}, {"contract", TypeContract}, {" finance ", TypeFinance},
	} {
		code, err := ParseType(tc.name)
		if err != nil || code != tc.code {
			t.Errorf("ParseType(%q) = %d, %v; want %d", tc.name, code, err, tc.code)
		}
		if back, _ := ParseType(TypeName(code)); back != code {
			t.Errorf("TypeName(%d) = %q does not parse back", code, TypeName(code))
		}
	}
	if _, err := ParseType("secret"); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("unknown type: %v", err)
	}
	if TypeName(42) != "type-42" {
		t.Errorf("TypeName(42) = %q", TypeName(42))
	}
}

func TestCheckPictureInput(t *testing.T) {
	png := testPNG(t)
	svg := func(s string) []byte { return []byte(s) }
	for _, tc := range []struct {
		name    string
		in      PictureInput
		want    error
		outType string
	}{
		{"png", PictureInput{"PNG", png, 40, 40}, nil, "png"},
		{"jpeg alias", PictureInput{"jpeg", []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10}, 1, 1}, nil, "jpg"},
		{"gif87a", PictureInput{"gif", []byte("GIF87a...."), 200, 200}, nil, "gif"},
		{"gif89a", PictureInput{"GIF", []byte("GIF89a...."), 30, 20}, nil, "gif"},
		{"svg", PictureInput{"svg", svg(`<?xml version="1.0"?>` + "\n" + `<svg xmlns="http://www.w3.org/2000/svg"><circle r="1"/></svg>` + "\n"), 40, 40}, nil, "svg"},
		{"svg without namespace", PictureInput{"svg", svg(`<svg><g/></svg>`), 40, 40}, nil, "svg"},
		{"svg with a DTD", PictureInput{"svg", svg(`<!DOCTYPE svg [<!ENTITY a "b">]><svg>&a;</svg>`), 40, 40}, ErrBadPicture, ""},
		{"svg not well-formed", PictureInput{"svg", svg(`<svg><g></svg>`), 40, 40}, ErrBadPicture, ""},
		{"svg two roots", PictureInput{"svg", svg(`<svg/><svg/>`), 40, 40}, ErrBadPicture, ""},
		{"svg text after root", PictureInput{"svg", svg(`<svg/>junk`), 40, 40}, ErrBadPicture, ""},
		{"svg of another namespace", PictureInput{"svg", svg(`<svg xmlns="urn:x"/>`), 40, 40}, ErrBadPicture, ""},
		{"html", PictureInput{"svg", svg(`<html/>`), 40, 40}, ErrBadPicture, ""},
		{"png magic, jpg declared", PictureInput{"jpg", png, 40, 40}, ErrBadPicture, ""},
		{"empty", PictureInput{"png", nil, 40, 40}, ErrBadPicture, ""},
		{"bmp", PictureInput{"bmp", []byte("BM...."), 40, 40}, ErrBadPicture, ""},
		{"zero width", PictureInput{"png", png, 0, 40}, ErrBadPicture, ""},
		{"201 mm", PictureInput{"png", png, 40, 201}, ErrBadPicture, ""},
		{"1 MiB", PictureInput{"png", append(bytes.Clone(png), make([]byte, MaxPictureSize-len(png))...), 40, 40}, nil, "png"},
		{"1 MiB + 1", PictureInput{"png", append(bytes.Clone(png), make([]byte, MaxPictureSize-len(png)+1)...), 40, 40}, ErrPictureTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := checkPictureInput(tc.in)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil && !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("%v does not wrap ErrInvalidRequest", err)
			}
			if err == nil && out.Type != tc.outType {
				t.Fatalf("type %q, want %q", out.Type, tc.outType)
			}
		})
	}
}

func TestMakeGeneratedHolder(t *testing.T) {
	e := newServiceEnv(t)
	ctx := context.Background()
	m := e.make(t, nil)
	rec := m.Record
	if !regexp.MustCompile(`^44030004[0-9]{12}$`).MatchString(rec.ESID) {
		t.Errorf("esID %q: want prefix, type 04 and 12 digits", rec.ESID)
	}
	s, err := ParseSeal(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := smx509.ParseCertificate(m.HolderCert)
	if s.ESID != rec.ESID || s.Name != testMakes.Name || s.Type != TypeContract || s.Header.Vid != "gmtrust" ||
		!bytes.Equal(s.Certs[0], m.HolderCert) || s.Picture.Type != "png" || !s.ValidStart.Equal(tSign) ||
		!s.ValidEnd.Equal(tSign.AddDate(0, 0, 365)) || holder.Subject.CommonName != testMakes.Name || holder.Subject.Organization[0] != "czt" {
		t.Fatalf("seal %+v, holder %s", s, holder.Subject)
	}
	if rec.HolderKeyRef != "mem:seal-"+rec.ID || rec.Status != SealActive || rec.CreatedBy != "admin" {
		t.Fatalf("record %+v", rec)
	}
	if r := VerifySeal(ctx, rec.DER, VerifyOptions{Trust: mustTrust(t, e.p.rootDER), Revocation: &fakeRevocation{}, Now: e.clock.Now}); r.Verdict != VerdictValid {
		t.Fatalf("the new seal does not verify: %s %+v", r.Reason, r.Checks)
	}
	// The maker is made on first use and reused while valid and good.
	e.make(t, nil)
	if e.ca.renewed != 1 {
		t.Fatalf("%d makers made for two seals", e.ca.renewed)
	}
	e.ca.setStatus(e.ca.signers[0].Serial, ca.StatusRevoked)
	e.make(t, nil)
	if e.ca.renewed != 2 {
		t.Fatal("a revoked maker was reused")
	}
	e.clock.advance(4 * 365 * 24 * time.Hour) // past the maker's end
	e.make(t, func(r *MakeRequest) { r.ValidDays = 30 })
	if e.ca.renewed != 3 {
		t.Fatal("an expired maker was reused")
	}
}

func TestMakeGivenHolder(t *testing.T) {
	e := newServiceEnv(t)
	first := e.make(t, nil)
	holderPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: first.HolderCert})
	given := func(mod func(r *MakeRequest)) (*Made, error) {
		req := testMakes
		req.Picture = PictureInput{Type: "png", Data: testPNG(t), WidthMM: 40, HeightMM: 40}
		req.Certificate = holderPEM
		req.ValidDays = 100
		if mod != nil {
			mod(&req)
		}
		return e.svc.Make(context.Background(), admin, req)
	}
	m, err := given(nil)
	if err != nil || !bytes.Equal(m.HolderCert, first.HolderCert) || m.Record.HolderKeyRef != first.Record.HolderKeyRef {
		t.Fatalf("seal with the first seal's holder: %v", err)
	}
	if _, err := given(func(r *MakeRequest) { r.Certificate = first.HolderCert; r.KeyRef = first.Record.HolderKeyRef }); err != nil {
		t.Fatalf("DER certificate and key_ref: %v", err)
	}
	// A certificate of our CA under another profile, with a key we hold.
	makerKey := e.ca.signers[0]
	otherPKI := newTestPKI(t)
	for _, tc := range []struct {
		name string
		mod  func(r *MakeRequest)
	}{
		{"longer than the certificate", func(r *MakeRequest) { r.ValidDays = 400 }},
		{"other department", func(r *MakeRequest) { r.Department = "other" }},
		{"not a seal-signer certificate", func(r *MakeRequest) { r.Certificate, r.KeyRef = makerKey.DER, makerKey.KeyRef }},
		{"not our certificate", func(r *MakeRequest) { r.Certificate = otherPKI.holderDER }},
		{"not a certificate", func(r *MakeRequest) {
			r.Certificate = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}},
		{"a key PEM", func(r *MakeRequest) {
			r.Certificate = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}},
		{"wrong key", func(r *MakeRequest) { r.KeyRef = makerKey.KeyRef }},
		{"unknown key", func(r *MakeRequest) { r.KeyRef = "mem:nope" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := given(tc.mod); !errors.Is(err, ErrBadHolderCert) {
				t.Fatalf("err = %v, want ErrBadHolderCert", err)
			}
		})
	}
	e.ca.setStatus(first.Record.HolderSerial, ca.StatusHold)
	if _, err := given(nil); !errors.Is(err, ErrBadHolderCert) {
		t.Fatalf("held certificate: %v", err)
	}
	if _, err := given(func(r *MakeRequest) { r.KeyRef = "x" }); err == nil {
		t.Fatal("key_ref without certificate accepted")
	}
}

func TestServicePermissions(t *testing.T) {
	e := newServiceEnv(t)
	ctx := context.Background()
	m := e.make(t, nil) // department czt, granted to oa
	id := m.Record.ID
	sealAdmin := func(dept string) Caller {
		return Caller{Name: "sa-" + dept, Department: dept, Roles: []string{RoleSealAdmin}}
	}
	auditor := Caller{Name: "auditor", Roles: []string{RoleAuditor}}
	stranger := Caller{Name: "stranger", Roles: []string{"approval-system"}}
	makeIn := func(dept string) func(c Caller) error {
		return func(c Caller) error {
			req := testMakes
			req.Department = dept
			req.Picture = PictureInput{Type: "png", Data: testPNG(t), WidthMM: 40, HeightMM: 40}
			_, err := e.svc.Make(ctx, c, req)
			return err
		}
	}
	stampWith := func(id string) func(c Caller) error {
		return func(c Caller) error {
			_, err := e.svc.Stamp(ctx, c, StampRequest{SealID: id, DataHash: docHash(testDocument), PropertyInfo: "p"})
			return err
		}
	}
	for _, tc := range []struct {
		name string
		c    Caller
		op   func(c Caller) error
		ok   bool
	}{
		{"admin makes for any department", admin, makeIn("other"), true},
		{"seal-admin makes for its department", sealAdmin("czt"), makeIn("czt"), true},
		{"seal-admin makes for another", sealAdmin("czt"), makeIn("other"), false},
		{"seal-admin without department", sealAdmin(""), makeIn(""), false},
		{"approval system makes", approval, makeIn("czt"), false},
		{"auditor makes", auditor, makeIn("czt"), false},
		{"seal-admin suspends its own", sealAdmin("czt"), func(c Caller) error { _, err := e.svc.Suspend(ctx, c, id); return err }, true},
		{"seal-admin resumes another department's", sealAdmin("x"), func(c Caller) error { _, err := e.svc.Resume(ctx, c, id); return err }, false},
		{"auditor grants", auditor, func(c Caller) error { _, err := e.svc.AddGrant(ctx, c, id, "p"); return err }, false},
		{"auditor reads grants", auditor, func(c Caller) error { _, err := e.svc.Grants(ctx, c, id); return err }, true},
		{"grantee reads the seal", approval, func(c Caller) error { _, err := e.svc.Get(ctx, c, id); return err }, true},
		{"stranger reads the seal", stranger, func(c Caller) error { _, err := e.svc.Get(ctx, c, id); return err }, false},
		{"grantee lists seals", approval, func(c Caller) error { _, _, err := e.svc.List(ctx, c, Filter{}); return err }, false},
		{"seal-admin lists another department", sealAdmin("czt"), func(c Caller) error { _, _, err := e.svc.List(ctx, c, Filter{Department: "x"}); return err }, false},
		{"grantee lists stamps", approval, func(c Caller) error { _, _, err := e.svc.Stamps(ctx, c, id, "", 0); return err }, true},
		{"stranger lists stamps", stranger, func(c Caller) error { _, _, err := e.svc.Stamps(ctx, c, id, "", 0); return err }, false},
		{"admin stamps without a grant", admin, stampWith(id), false},
		{"grantee stamps with the seal suspended above", approval, stampWith(id), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op(tc.c)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("allowed")
			}
		})
	}
	// A seal administrator's listing is cut to its department.
	recs, _, err := e.svc.List(ctx, sealAdmin("czt"), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Department != "czt" {
			t.Fatalf("seal-admin of czt sees a seal of %q", r.Department)
		}
	}
}

func TestStampRules(t *testing.T) {
	e := newServiceEnv(t)
	ctx := context.Background()
	m := e.make(t, nil)
	id := m.Record.ID
	req := StampRequest{SealID: id, DataHash: docHash(testDocument), PropertyInfo: "/Doc_0/Signs/Sign_0/Signature.xml", ApprovalRef: "审批 7"}
	st, err := e.svc.Stamp(ctx, approval, req)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ParseSignature(st.DER)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.Record.Signature, sig.Value) || !st.Record.At.Equal(sig.TimeInfo) || !sig.TimeInfo.Equal(tSign) ||
		st.Record.Principal != "oa" || st.Record.ApprovalRef != "审批 7" || st.ESID != m.Record.ESID || len(e.store.stamps) != 1 {
		t.Fatalf("stamp record %+v vs signature time %s", st.Record, sig.TimeInfo)
	}
	if r := e.svc.Verify(ctx, st.DER, testDocument, nil); r.Verdict != VerdictValid {
		t.Fatalf("the stamp does not verify: %s %+v", r.Reason, r.Checks)
	}

	refuse := func(name string, c Caller, r StampRequest, want error) {
		t.Helper()
		before := len(e.store.stamps)
		if _, err := e.svc.Stamp(ctx, c, r); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
		if len(e.store.stamps) != before {
			t.Errorf("%s: a refused stamp was recorded", name)
		}
	}
	with := func(mod func(r *StampRequest)) StampRequest { r := req; mod(&r); return r }
	refuse("no grant", Caller{Name: "other"}, req, ErrForbidden)
	refuse("administrator without a grant", admin, req, ErrForbidden)
	refuse("short hash", approval, with(func(r *StampRequest) { r.DataHash = r.DataHash[:31] }), ErrInvalidRequest)
	refuse("non-ASCII propertyInfo", approval, with(func(r *StampRequest) { r.PropertyInfo = "文档.xml" }), ErrInvalidRequest)
	refuse("control character", approval, with(func(r *StampRequest) { r.PropertyInfo = "a\nb" }), ErrInvalidRequest)
	refuse("long propertyInfo", approval, with(func(r *StampRequest) { r.PropertyInfo = strings.Repeat("a", MaxPropertyInfo+1) }), ErrInvalidRequest)
	refuse("long approval reference", approval, with(func(r *StampRequest) { r.ApprovalRef = strings.Repeat("a", MaxApprovalRef+1) }), ErrInvalidRequest)
	refuse("unknown seal", approval, with(func(r *StampRequest) { r.SealID = "nope" }), ErrNotFound)

	// Changes made elsewhere (another process on the same database) while
	// this service has the seal and grant cached: the stamp's own
	// transaction catches them.
	if _, err := e.store.SetSealStatus(ctx, StatusChange{ID: id, From: []SealState{SealActive}, To: SealSuspended}); err != nil {
		t.Fatal(err)
	}
	refuse("suspended elsewhere", approval, req, ErrNotUsable)
	if _, err := e.store.SetSealStatus(ctx, StatusChange{ID: id, From: []SealState{SealSuspended}, To: SealActive}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Stamp(ctx, approval, req); err != nil {
		t.Fatalf("resumed elsewhere: %v", err)
	}
	if err := e.store.DeleteGrant(ctx, id, "oa"); err != nil {
		t.Fatal(err)
	}
	refuse("grant withdrawn elsewhere", approval, req, ErrForbidden)
	if _, err := e.svc.AddGrant(ctx, admin, id, "oa"); err != nil {
		t.Fatal(err)
	}
	e.ca.setStatus(m.Record.HolderSerial, ca.StatusRevoked)
	refuse("holder certificate revoked", approval, req, ErrNotUsable)
	e.ca.setStatus(m.Record.HolderSerial, ca.StatusGood)

	if _, err := e.svc.Suspend(ctx, admin, id); err != nil {
		t.Fatal(err)
	}
	refuse("suspended", approval, req, ErrNotUsable)
	if _, err := e.svc.Resume(ctx, admin, id); err != nil {
		t.Fatal(err)
	}
	e.clock.advance(366 * 24 * time.Hour)
	refuse("after the seal's validity", approval, req, ErrNotUsable)
}

func TestStatusTransitions(t *testing.T) {
	e := newServiceEnv(t)
	ctx := context.Background()
	type step struct {
		action string
		want   SealState
		err    error
	}
	do := func(id, action string) (*Record, error) {
		switch action {
		case "suspend":
			return e.svc.Suspend(ctx, admin, id)
		case "resume":
			return e.svc.Resume(ctx, admin, id)
		case "revoke":
			return e.svc.Revoke(ctx, admin, id, RevokeRetired)
		}
		return e.svc.Revoke(ctx, admin, id, RevokeCompromised)
	}
	for _, steps := range [][]step{
		{{"suspend", SealSuspended, nil}, {"suspend", SealSuspended, nil}, {"resume", SealActive, nil}, {"resume", SealActive, nil}},
		{{"suspend", SealSuspended, nil}, {"revoke", SealRevoked, nil}, {"resume", 0, ErrStateConflict}, {"suspend", 0, ErrStateConflict}},
		{{"revoke", SealRevoked, nil}, {"revoke-compromised", SealRevoked, nil}},
	} {
		id := e.make(t, nil).Record.ID
		for i, s := range steps {
			rec, err := do(id, s.action)
			if !errors.Is(err, s.err) || (s.err == nil && (err != nil || rec.Status != s.want)) {
				t.Fatalf("%v step %d (%s): %+v, %v", steps, i, s.action, rec, err)
			}
		}
		if rec, _ := e.store.Seal(ctx, id); rec.Status == SealRevoked && rec.RevocationReason != RevokeRetired {
			t.Fatalf("revoking again changed the reason to %q", rec.RevocationReason)
		}
	}
	if _, err := e.svc.Revoke(ctx, admin, "x", "lost"); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("unknown reason: %v", err)
	}
	if _, err := e.svc.Suspend(ctx, admin, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown seal: %v", err)
	}
}

// regStub is a Registry with one seal and an optional stamp log entry.
type regStub struct {
	rec   *Record
	stamp *StampRecord
	err   error
	calls int
}

func (r *regStub) SealByESID(_ context.Context, esID string) (*Record, error) {
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	if r.rec == nil || r.rec.ESID != esID {
		return nil, ErrNotFound
	}
	return r.rec, nil
}

func (r *regStub) StampBySignature(_ context.Context, value []byte) (*StampRecord, error) {
	if r.stamp == nil || !bytes.Equal(r.stamp.Signature, value) {
		return nil, ErrNotFound
	}
	return r.stamp, nil
}

// TestVerifierRegistryRule checks the table documented on Verifier.
func TestVerifierRegistryRule(t *testing.T) {
	p := newTestPKI(t)
	der := stampTest(t, p, makeTestSeal(t, p))
	sig, _ := ParseSignature(der)
	s := sig.Seal
	record := func(st SealState, reason string) *Record {
		return &Record{ID: "s1", ESID: s.ESID, Name: s.Name, Type: s.Type, ValidStart: s.ValidStart, ValidEnd: s.ValidEnd,
			Status: st, RevocationReason: reason, StatusChangedAt: tNow}
	}
	logged := &StampRecord{ID: "t1", SealID: "s1", Principal: "oa", At: sig.TimeInfo, DataHash: sig.DataHash, Signature: sig.Value, CreatedAt: tSign}
	otherData := *logged
	otherData.DataHash = make([]byte, 32)
	renamed := record(SealActive, "")
	renamed.Name = "another seal"
	for _, tc := range []struct {
		name    string
		reg     *regStub
		result  string
		verdict string
	}{
		{"active", &regStub{rec: record(SealActive, "")}, ResultPass, VerdictValid},
		{"unknown seal", &regStub{}, ResultIndeterminate, VerdictIndeterminate},
		{"registry down", &regStub{err: errors.New("connection refused")}, ResultIndeterminate, VerdictIndeterminate},
		{"another seal under the esID", &regStub{rec: renamed}, ResultFail, VerdictInvalid},
		{"suspended, stamp not in the log", &regStub{rec: record(SealSuspended, "")}, ResultFail, VerdictInvalid},
		{"suspended, stamp in the log", &regStub{rec: record(SealSuspended, ""), stamp: logged}, ResultIndeterminate, VerdictIndeterminate},
		{"suspended, log entry for other data", &regStub{rec: record(SealSuspended, ""), stamp: &otherData}, ResultFail, VerdictInvalid},
		{"retired, in the log", &regStub{rec: record(SealRevoked, RevokeRetired), stamp: logged}, ResultPass, VerdictValid},
		{"retired, not in the log", &regStub{rec: record(SealRevoked, RevokeRetired)}, ResultFail, VerdictInvalid},
		{"unspecified, in the log", &regStub{rec: record(SealRevoked, RevokeUnspecified), stamp: logged}, ResultIndeterminate, VerdictIndeterminate},
		{"compromised, in the log", &regStub{rec: record(SealRevoked, RevokeCompromised), stamp: logged}, ResultFail, VerdictInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(VerifierOptions{Registry: tc.reg, Trust: mustTrust(t, p.rootDER), Revocation: &fakeRevocation{}, Now: fixedNow})
			r := v.Verify(context.Background(), der, testDocument, nil)
			c, ok := r.Find(CheckSealStatus)
			if !ok || c.Result != tc.result || r.Verdict != tc.verdict {
				t.Fatalf("seal_status %+v, verdict %s (%s)", c, r.Verdict, r.Reason)
			}
			if r.Checks[len(r.Checks)-1].Name != CheckSealStatus {
				t.Fatal("seal_status is not the last check of a signature without timestamp")
			}
		})
	}
	// The state is cached for StatusTTL, and Forget drops it.
	reg := &regStub{rec: record(SealActive, "")}
	clk := &movingClock{t: tNow}
	v := NewVerifier(VerifierOptions{Registry: reg, Now: clk.Now, StatusTTL: time.Minute})
	for range 3 {
		v.Verify(context.Background(), der, nil, nil)
	}
	if reg.calls != 1 {
		t.Fatalf("%d registry reads for 3 verifications", reg.calls)
	}
	v.Forget(s.ESID)
	v.Verify(context.Background(), der, nil, nil)
	clk.advance(2 * time.Minute)
	v.Verify(context.Background(), der, nil, nil)
	if reg.calls != 3 {
		t.Fatalf("%d registry reads, want 3 (after Forget and after the TTL)", reg.calls)
	}
	// A bad signature gets no registry check at all.
	if r := v.Verify(context.Background(), []byte{0x30, 0}, nil, nil); r.Verdict != VerdictInvalid || len(r.Checks) != 1 {
		t.Fatalf("garbage: %+v", r)
	}
}

// FuzzCheckPictureInput: any picture bytes and declared type give an
// answer without panicking, and what is accepted keeps to the rules.
func FuzzCheckPictureInput(f *testing.F) {
	f.Add("png", []byte("\x89PNG\r\n\x1a\n"), 40, 40)
	f.Add("svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><g/></svg>`), 1, 200)
	f.Add("svg", []byte(`<!DOCTYPE x [<!ENTITY a "b">]><svg>&a;</svg>`), 40, 40)
	f.Add("gif", []byte("GIF89a"), 0, 40)
	f.Add("jpeg", []byte{0xff, 0xd8, 0xff}, 300, 40)
	f.Fuzz(func(t *testing.T, typ string, data []byte, w, h int) {
		out, err := checkPictureInput(PictureInput{Type: typ, Data: data, WidthMM: w, HeightMM: h})
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if !slices.Contains([]string{"png", "jpg", "gif", "svg"}, out.Type) || len(data) == 0 || len(data) > MaxPictureSize ||
			w < 1 || w > MaxPictureMM || h < 1 || h > MaxPictureMM {
			t.Fatalf("accepted %q, %d bytes, %dx%d mm", out.Type, len(data), w, h)
		}
		if out.Type == "svg" && checkSVG(data) != nil {
			t.Fatal("accepted an SVG that does not parse")
		}
	})
}
