package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/seal"
)

// sealFixture is a database with a CA, a seal maker signer and a holder
// certificate, ready for seals.
type sealFixture struct {
	db     *DB
	reg    *Seals
	holder *ca.Certificate
	maker  string
}

func newSealFixture(t *testing.T, b backend) *sealFixture {
	t.Helper()
	// One writer, so that blockWriter holds them all.
	db := openDB(t, b.newDSN(t), Options{Now: newTestClock().Now, Writers: 1})
	mustInsertCA(t, db, "issuing")
	holder := testCert("issuing")
	holder.Profile = "seal-signer"
	mustInsertCert(t, db, holder)
	maker := &ca.SignerRecord{ID: "seal-maker-1", CAID: "issuing", Purpose: ca.PurposeSealMaker, KeyRef: "soft:m",
		DER: randBytes(500), Serial: randSerial(), NotBefore: testTime, NotAfter: testTime.AddDate(3, 0, 0)}
	if err := db.InsertSigner(context.Background(), maker); err != nil {
		t.Fatal(err)
	}
	reg, err := NewSeals(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return &sealFixture{db: db, reg: reg, holder: holder, maker: maker.ID}
}

func (f *sealFixture) record(id, esID string) *seal.Record {
	return &seal.Record{
		ID: id, ESID: esID, Name: "测试单位 合同专用章", Type: seal.TypeContract, Department: "dept-a",
		HolderCAID: f.holder.CAID, HolderSerial: f.holder.Serial, HolderKeyRef: "soft:seal-" + id, MakerSignerID: f.maker,
		DER: randBytes(2000), PictureType: "png", Picture: randBytes(300), WidthMM: 40, HeightMM: 42,
		ValidStart: testTime, ValidEnd: testTime.AddDate(1, 0, 0), Status: seal.SealActive, CreatedBy: "admin",
	}
}

func (f *sealFixture) insert(t *testing.T, r *seal.Record, grants ...string) {
	t.Helper()
	var gs []seal.Grant
	for _, p := range grants {
		gs = append(gs, seal.Grant{SealID: r.ID, Principal: p, GrantedBy: "admin"})
	}
	if err := f.reg.InsertSeal(context.Background(), r, gs); err != nil {
		t.Fatalf("InsertSeal(%s): %v", r.ID, err)
	}
}

func TestSealRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		want := f.record("s1", "37000004000000000001")
		f.insert(t, want, "approval", "approval")
		for name, get := range map[string]func() (*seal.Record, error){
			"by id":   func() (*seal.Record, error) { return f.reg.Seal(ctx, "s1") },
			"by esID": func() (*seal.Record, error) { return f.reg.SealByESID(ctx, want.ESID) },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got.ID != want.ID || got.ESID != want.ESID || got.Name != want.Name || got.Type != want.Type ||
				got.Department != want.Department || got.HolderSerial != want.HolderSerial || got.HolderKeyRef != want.HolderKeyRef ||
				got.MakerSignerID != want.MakerSignerID || !bytes.Equal(got.DER, want.DER) || !bytes.Equal(got.Picture, want.Picture) ||
				got.PictureType != "png" || got.WidthMM != 40 || got.HeightMM != 42 || !got.ValidStart.Equal(want.ValidStart) ||
				!got.ValidEnd.Equal(want.ValidEnd) || got.Status != seal.SealActive || !got.CreatedAt.Equal(want.CreatedAt) ||
				got.CreatedBy != "admin" || !got.StatusChangedAt.IsZero() {
				t.Fatalf("%s: got %+v, want %+v", name, got, want)
			}
		}
		if _, err := f.reg.Seal(ctx, "nope"); !errors.Is(err, seal.ErrNotFound) {
			t.Errorf("missing seal: %v, want seal.ErrNotFound", err)
		}
		if _, err := f.reg.SealByESID(ctx, "nope"); !errors.Is(err, seal.ErrNotFound) {
			t.Errorf("missing esID: %v, want seal.ErrNotFound", err)
		}
		gs, err := f.reg.Grants(ctx, "s1")
		if err != nil || len(gs) != 1 || gs[0].Principal != "approval" || gs[0].GrantedBy != "admin" {
			t.Fatalf("grants = %+v, %v (a repeated grant counts once)", gs, err)
		}
		if ref, err := f.reg.HolderKeyRef(ctx, f.holder.CAID, f.holder.Serial); err != nil || ref != want.HolderKeyRef {
			t.Errorf("HolderKeyRef = %q, %v", ref, err)
		}
		if _, err := f.reg.HolderKeyRef(ctx, "issuing", "123"); !errors.Is(err, seal.ErrNotFound) {
			t.Errorf("HolderKeyRef of an unknown certificate: %v", err)
		}
	})
}

func TestInsertSealRejects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		f.insert(t, f.record("s1", "E1"))
		dupESID := f.record("s2", "E1")
		if err := f.reg.InsertSeal(ctx, dupESID, nil); !errors.Is(err, seal.ErrDuplicate) {
			t.Errorf("duplicate esID: %v, want seal.ErrDuplicate", err)
		}
		noCert := f.record("s3", "E3")
		noCert.HolderSerial = randSerial()
		if err := f.reg.InsertSeal(ctx, noCert, nil); !errors.Is(err, ca.ErrNotFound) {
			t.Errorf("unknown holder certificate: %v, want ca.ErrNotFound", err)
		}
		badGrant := f.record("s4", "E4")
		if err := f.reg.InsertSeal(ctx, badGrant, []seal.Grant{{SealID: "other", Principal: "p"}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("grant for another seal: %v, want ErrInvalid", err)
		}
		noDER := f.record("s5", "E5")
		noDER.DER = nil
		if err := f.reg.InsertSeal(ctx, noDER, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("seal without DER: %v, want ErrInvalid", err)
		}
		// A failed insert leaves nothing behind, grants included.
		if n := countRows(t, f.db, "SELECT COUNT(*) FROM seals"); n != 1 {
			t.Errorf("%d seals stored, want 1", n)
		}
		if n := countRows(t, f.db, "SELECT COUNT(*) FROM seal_grants"); n != 0 {
			t.Errorf("%d grants stored, want 0", n)
		}
	})
}

func TestSealsListing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		var ids []string
		for i := range 7 {
			r := f.record("s"+string(rune('a'+i)), "E"+string(rune('a'+i)))
			if i%2 == 1 {
				r.Department = "dept-b"
			}
			f.insert(t, r)
			ids = append(ids, r.ID)
		}
		if _, err := f.reg.SetSealStatus(ctx, seal.StatusChange{ID: "sa", From: []seal.SealState{seal.SealActive}, To: seal.SealSuspended}); err != nil {
			t.Fatal(err)
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			recs, next, err := f.reg.Seals(ctx, seal.Filter{Limit: 3, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.DER != nil || r.Picture != nil {
					t.Fatal("a listing must not carry DER or pictures")
				}
				got = append(got, r.ID)
			}
			if next == "" {
				break
			}
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			cursor = next
		}
		if len(got) != 7 || got[0] != ids[6] || got[6] != ids[0] {
			t.Fatalf("pages = %v, want newest first of %v", got, ids)
		}
		for _, tc := range []struct {
			f    seal.Filter
			want int
		}{
			{seal.Filter{Department: "dept-b"}, 3},
			{seal.Filter{Department: "dept-a", Status: seal.SealActive}, 3},
			{seal.Filter{Status: seal.SealSuspended}, 1},
			{seal.Filter{Status: seal.SealRevoked}, 0},
		} {
			recs, _, err := f.reg.Seals(ctx, tc.f)
			if err != nil || len(recs) != tc.want {
				t.Errorf("filter %+v: %d seals, %v; want %d", tc.f, len(recs), err, tc.want)
			}
		}
		if _, _, err := f.reg.Seals(ctx, seal.Filter{Cursor: "!!"}); !errors.Is(err, seal.ErrInvalidRequest) {
			t.Errorf("bad cursor: %v, want seal.ErrInvalidRequest", err)
		}
	})
}

func TestSetSealStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		f.insert(t, f.record("s1", "E1"))
		at := time.Date(2025, 6, 1, 10, 0, 0, 123, time.UTC)
		suspend := seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealActive}, To: seal.SealSuspended, By: "boss", At: at}
		rec, err := f.reg.SetSealStatus(ctx, suspend)
		if err != nil || rec.Status != seal.SealSuspended || rec.StatusChangedBy != "boss" || !rec.StatusChangedAt.Equal(at) {
			t.Fatalf("suspend: %+v, %v", rec, err)
		}
		// Not allowed from the current state: nothing changes, and the
		// current record comes back with the conflict.
		rec, err = f.reg.SetSealStatus(ctx, suspend)
		if !errors.Is(err, seal.ErrStateConflict) || rec == nil || rec.Status != seal.SealSuspended {
			t.Fatalf("suspend twice: %+v, %v; want the record and ErrStateConflict", rec, err)
		}
		revoke := seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealActive, seal.SealSuspended}, To: seal.SealRevoked,
			Reason: seal.RevokeRetired, By: "boss", At: at.Add(time.Hour)}
		if rec, err = f.reg.SetSealStatus(ctx, revoke); err != nil || rec.Status != seal.SealRevoked || rec.RevocationReason != seal.RevokeRetired {
			t.Fatalf("revoke: %+v, %v", rec, err)
		}
		resume := seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealSuspended}, To: seal.SealActive}
		if _, err := f.reg.SetSealStatus(ctx, resume); !errors.Is(err, seal.ErrStateConflict) {
			t.Fatalf("resume a revoked seal: %v, want ErrStateConflict", err)
		}
		stored, err := f.reg.Seal(ctx, "s1")
		if err != nil || stored.Status != seal.SealRevoked || !stored.StatusChangedAt.Equal(at.Add(time.Hour)) {
			t.Fatalf("stored: %+v, %v", stored, err)
		}
		if _, err := f.reg.SetSealStatus(ctx, seal.StatusChange{ID: "nope", From: []seal.SealState{seal.SealActive}, To: seal.SealRevoked}); !errors.Is(err, seal.ErrNotFound) {
			t.Fatalf("unknown seal: %v", err)
		}
	})
}

func TestSealGrants(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		f.insert(t, f.record("s1", "E1"))
		for range 2 {
			if err := f.reg.AddGrant(ctx, seal.Grant{SealID: "s1", Principal: "oa-system", GrantedBy: "admin"}); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := f.reg.Granted(ctx, "s1", "oa-system"); !ok || err != nil {
			t.Fatalf("Granted = %v, %v", ok, err)
		}
		if ok, _ := f.reg.Granted(ctx, "s1", "someone"); ok {
			t.Fatal("Granted for a principal without a grant")
		}
		if err := f.reg.AddGrant(ctx, seal.Grant{SealID: "nope", Principal: "p"}); !errors.Is(err, seal.ErrNotFound) {
			t.Fatalf("grant on an unknown seal: %v", err)
		}
		if err := f.reg.DeleteGrant(ctx, "s1", "oa-system"); err != nil {
			t.Fatal(err)
		}
		if err := f.reg.DeleteGrant(ctx, "s1", "oa-system"); !errors.Is(err, seal.ErrNotFound) {
			t.Fatalf("delete a missing grant: %v", err)
		}
		if ok, _ := f.reg.Granted(ctx, "s1", "oa-system"); ok {
			t.Fatal("grant still there after DeleteGrant")
		}
	})
}

func testStamp(id, sealID, principal string) *seal.StampRecord {
	return &seal.StampRecord{ID: id, SealID: sealID, Principal: principal, At: testTime.Add(time.Hour), DataHash: randBytes(32),
		PropertyInfo: "/Doc_0/Signs/Sign_0/Signature.xml", ApprovalRef: "审批-2025-001", Signature: randBytes(71)}
}

// TestInsertStampChecks: a stamp is recorded only while the seal is
// active, its holder certificate good and the principal granted, checked
// in the stamp's own transaction.
func TestInsertStampChecks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		f.insert(t, f.record("s1", "E1"), "oa")
		ok := testStamp("t1", "s1", "oa")
		if err := f.reg.InsertStamp(ctx, ok); err != nil {
			t.Fatal(err)
		}
		got, err := f.reg.StampBySignature(ctx, ok.Signature)
		if err != nil || got.ID != "t1" || got.Principal != "oa" || !got.At.Equal(ok.At) || !bytes.Equal(got.DataHash, ok.DataHash) ||
			got.PropertyInfo != ok.PropertyInfo || got.ApprovalRef != ok.ApprovalRef || !got.CreatedAt.Equal(ok.CreatedAt) {
			t.Fatalf("StampBySignature = %+v, %v; want %+v", got, err, ok)
		}
		if _, err := f.reg.StampBySignature(ctx, randBytes(71)); !errors.Is(err, seal.ErrNotFound) {
			t.Fatalf("unknown signature: %v", err)
		}
		dup := testStamp("t2", "s1", "oa")
		dup.Signature = ok.Signature
		if err := f.reg.InsertStamp(ctx, dup); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("same signature twice: %v, want ErrDuplicate", err)
		}

		refused := func(name string, s *seal.StampRecord) {
			t.Helper()
			if err := f.reg.InsertStamp(ctx, s); !errors.Is(err, seal.ErrStampRefused) {
				t.Errorf("%s: %v, want ErrStampRefused", name, err)
			}
		}
		refused("no grant", testStamp("t3", "s1", "stranger"))
		refused("unknown seal", testStamp("t4", "nope", "oa"))
		if _, err := f.reg.SetSealStatus(ctx, seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealActive}, To: seal.SealSuspended}); err != nil {
			t.Fatal(err)
		}
		refused("suspended", testStamp("t5", "s1", "oa"))
		if _, err := f.reg.SetSealStatus(ctx, seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealSuspended}, To: seal.SealActive}); err != nil {
			t.Fatal(err)
		}
		if err := f.reg.InsertStamp(ctx, testStamp("t6", "s1", "oa")); err != nil {
			t.Fatalf("after resume: %v", err)
		}
		if _, err := f.db.Revoke(ctx, ca.Revocation{CAID: f.holder.CAID, Serial: f.holder.Serial, Reason: 1, At: testTime}); err != nil {
			t.Fatal(err)
		}
		refused("holder certificate revoked", testStamp("t7", "s1", "oa"))
		if n := countRows(t, f.db, "SELECT COUNT(*) FROM stamps"); n != 2 {
			t.Fatalf("%d stamps stored, want 2 (refusals store nothing)", n)
		}
	})
}

// TestStampsGroupCommit: concurrent stamps share commits, and a refused
// one in the same batch fails alone.
func TestStampsGroupCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		ctx := context.Background()
		f.insert(t, f.record("s1", "E1"), "oa")
		before := f.db.WriteStats()
		release := blockWriter(t, f.db)
		const n = 40
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			principal := "oa"
			if i == n/2 {
				principal = "stranger"
			}
			wg.Go(func() { errs[i] = f.reg.InsertStamp(ctx, testStamp(randHex(8), "s1", principal)) })
		}
		waitQueued(t, f.db, n)
		release()
		wg.Wait()
		for i, err := range errs {
			if i == n/2 {
				if !errors.Is(err, seal.ErrStampRefused) {
					t.Errorf("stamp without grant: %v", err)
				}
			} else if err != nil {
				t.Errorf("stamp %d: %v", i, err)
			}
		}
		st := f.db.WriteStats()
		if batches := st.Batches - before.Batches; batches > 4 {
			t.Errorf("%d commits for %d queued stamps: no group commit", batches, n)
		}
		if st.FailedGroups != before.FailedGroups {
			t.Errorf("a refused stamp failed its batch (%d failed groups)", st.FailedGroups-before.FailedGroups)
		}
		// Pagination of the log.
		var seen int
		cursor := ""
		for {
			page, next, err := f.reg.Stamps(ctx, seal.StampFilter{SealID: "s1", Cursor: cursor, Limit: 15})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(page); i++ {
				if page[i].CreatedAt.After(page[i-1].CreatedAt) {
					t.Fatal("stamps not newest first")
				}
			}
			seen += len(page)
			if next == "" {
				break
			}
			cursor = next
		}
		if seen != n-1 {
			t.Fatalf("listed %d stamps, want %d", seen, n-1)
		}
		if own, _, err := f.reg.Stamps(ctx, seal.StampFilter{SealID: "s1", Principal: "oa"}); err != nil || len(own) != n-1 {
			t.Errorf("stamps of oa: %d, %v", len(own), err)
		}
		if none, _, err := f.reg.Stamps(ctx, seal.StampFilter{SealID: "s1", Principal: "stranger"}); err != nil || len(none) != 0 {
			t.Errorf("stamps of stranger: %d, %v", len(none), err)
		}
		if _, _, err := f.reg.Stamps(ctx, seal.StampFilter{SealID: "s1", Cursor: "garbage"}); !errors.Is(err, seal.ErrInvalidRequest) {
			t.Errorf("bad cursor: %v", err)
		}
	})
}

// stampEntries returns the seal.stamp audit entries by object.
func stampEntries(t *testing.T, db *DB) map[string]audit.Entry {
	t.Helper()
	out := map[string]audit.Entry{}
	for _, e := range auditEntries(t, db) {
		if e.Action != "seal.stamp" {
			continue
		}
		if _, dup := out[e.Object]; dup {
			t.Fatalf("two audit entries for %s", e.Object)
		}
		out[e.Object] = e
	}
	return out
}

// TestStampsBulkConcurrent: stamps from many callers, on two seals by
// two principals, are checked and written together; every one is
// recorded once, with its audit entry (details as the single-stamp
// write makes them), in a chain without gaps.
func TestStampsBulkConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		f := newSealFixture(t, b)
		f.insert(t, f.record("s1", "E1"), "oa", "erp")
		f.insert(t, f.record("s2", "E2"), "oa")
		before := f.db.WriteStats()
		bulkBefore := f.db.w.bulkWrites.Load()
		const callers, each = 48, 10
		stamps := make([][]*seal.StampRecord, callers)
		var wg sync.WaitGroup
		for i := range callers {
			sealID, principal := "s1", "oa"
			switch i % 3 {
			case 1:
				principal = "erp"
			case 2:
				sealID = "s2"
			}
			wg.Go(func() {
				ctx := actorCtx(principal)
				for range each {
					s := testStamp(randHex(8), sealID, principal)
					if err := f.reg.InsertStamp(ctx, s); err != nil {
						t.Errorf("stamp on %s by %s: %v", sealID, principal, err)
						return
					}
					stamps[i] = append(stamps[i], s)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if n := countRows(t, f.db, "SELECT COUNT(*) FROM stamps"); n != callers*each {
			t.Fatalf("%d stamps stored, want %d", n, callers*each)
		}
		verifyChain(t, f.db)
		entries := stampEntries(t, f.db)
		if len(entries) != callers*each {
			t.Fatalf("%d stamp audit entries, want %d", len(entries), callers*each)
		}
		for i := range callers {
			for _, s := range stamps[i] {
				got, err := f.reg.StampBySignature(context.Background(), s.Signature)
				if err != nil || got.ID != s.ID || got.SealID != s.SealID || got.Principal != s.Principal || !got.At.Equal(s.At) ||
					!bytes.Equal(got.DataHash, s.DataHash) || got.PropertyInfo != s.PropertyInfo || got.ApprovalRef != s.ApprovalRef ||
					!bytes.Equal(got.Signature, s.Signature) || !got.CreatedAt.Equal(s.CreatedAt) {
					t.Fatalf("stored stamp %+v, %v; want %+v", got, err, s)
				}
				e, ok := entries["stamp/"+s.ID]
				if !ok {
					t.Fatalf("no audit entry for stamp %s", s.ID)
				}
				var det map[string]any
				if err := json.Unmarshal([]byte(e.Details), &det); err != nil {
					t.Fatal(err)
				}
				if e.Principal != s.Principal || e.RequestID != "req-"+s.Principal || e.Outcome != audit.OutcomeSuccess ||
					det["seal"] != s.SealID || det["data_hash"] != hex.EncodeToString(s.DataHash) || det["property_info"] != s.PropertyInfo ||
					det["approval_ref"] != s.ApprovalRef || det["at"] != auditTime(s.At) || det["source"] != "192.0.2.1" {
					t.Fatalf("audit entry of stamp %s: %+v, details %v", s.ID, e, det)
				}
			}
		}
		st := f.db.WriteStats()
		if st.FailedGroups != before.FailedGroups {
			t.Errorf("%d failed groups", st.FailedGroups-before.FailedGroups)
		}
		bulked := f.db.w.bulkWrites.Load() - bulkBefore
		t.Logf("%d stamps in %d commits, %d of them written together", callers*each, st.Batches-before.Batches, bulked)
		if bulked == 0 {
			t.Error("no stamp went through the combined write")
		}
	})
}

// TestStampsBatchMixed queues one batch of good stamps for two (seal,
// principal) pairs, certificates, and stamps the registry refuses (no
// grant, seal suspended, holder certificate revoked, unknown seal) and,
// in the second case, duplicates: each caller gets its own outcome, the
// others commit, and refused or duplicate stamps leave no row and no
// audit entry. The same batch runs with and without the combined write.
func TestStampsBatchMixed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tc := range []struct {
			name       string
			bulk       bool
			duplicates bool
		}{
			{"combined", true, false},
			{"combined with duplicates", true, true},
			{"one by one", false, false},
			{"one by one with duplicates", false, true},
		} {
			t.Run(tc.name, func(t *testing.T) { testStampsBatchMixed(t, b, tc.bulk, tc.duplicates) })
		}
	})
}

func testStampsBatchMixed(t *testing.T, b backend, bulk, duplicates bool) {
	db := openDB(t, b.newDSN(t), Options{Now: newTestClock().Now, Writers: 1, bulk: &bulk})
	ctx := context.Background()
	mustInsertCA(t, db, "issuing")
	f := &sealFixture{db: db}
	var err error
	if f.reg, err = NewSeals(ctx, db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.reg.Close() })
	maker := &ca.SignerRecord{ID: "seal-maker-1", CAID: "issuing", Purpose: ca.PurposeSealMaker, KeyRef: "soft:m",
		DER: randBytes(500), Serial: randSerial(), NotBefore: testTime, NotAfter: testTime.AddDate(3, 0, 0)}
	if err := db.InsertSigner(ctx, maker); err != nil {
		t.Fatal(err)
	}
	f.maker = maker.ID
	holder := func() *ca.Certificate {
		c := testCert("issuing")
		c.Profile = "seal-signer"
		mustInsertCert(t, db, c)
		return c
	}
	f.holder = holder()
	f.insert(t, f.record("s1", "E1"), "oa")
	f.insert(t, f.record("s2", "E2"), "oa")
	f.insert(t, f.record("s3", "E3"), "erp")
	f.holder = holder()
	f.insert(t, f.record("s4", "E4"), "oa")
	if _, err := f.reg.SetSealStatus(ctx, seal.StatusChange{ID: "s2", From: []seal.SealState{seal.SealActive}, To: seal.SealSuspended}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Revoke(ctx, ca.Revocation{CAID: f.holder.CAID, Serial: f.holder.Serial, Reason: 1, At: testTime}); err != nil {
		t.Fatal(err)
	}
	stored := testStamp("stored", "s1", "oa")
	if err := f.reg.InsertStamp(ctx, stored); err != nil {
		t.Fatal(err)
	}
	stampsBefore := countRows(t, db, "SELECT COUNT(*) FROM stamps")
	certsBefore := countRows(t, db, "SELECT COUNT(*) FROM certificates")
	entriesBefore := len(stampEntries(t, db))

	type write struct {
		kind  string // "ok", "refused", "dup" (exactly one of a pair succeeds), "dup-stored", "cert"
		stamp *seal.StampRecord
		cert  *ca.Certificate
	}
	var writes []write
	for range 6 {
		writes = append(writes, write{kind: "ok", stamp: testStamp(randHex(8), "s1", "oa")})
	}
	for range 2 {
		writes = append(writes, write{kind: "ok", stamp: testStamp(randHex(8), "s3", "erp")})
		writes = append(writes, write{kind: "cert", cert: testCert("issuing")})
	}
	writes = append(writes,
		write{kind: "refused", stamp: testStamp(randHex(8), "s1", "stranger")}, // no grant
		write{kind: "refused", stamp: testStamp(randHex(8), "s2", "oa")},       // seal suspended
		write{kind: "refused", stamp: testStamp(randHex(8), "s2", "oa")},
		write{kind: "refused", stamp: testStamp(randHex(8), "s4", "oa")},   // holder certificate revoked
		write{kind: "refused", stamp: testStamp(randHex(8), "nope", "oa")}, // no such seal
	)
	if duplicates {
		a, c := testStamp(randHex(8), "s1", "oa"), testStamp(randHex(8), "s1", "oa")
		c.Signature = a.Signature
		again := testStamp(stored.ID, "s1", "oa")
		writes = append(writes, write{kind: "dup", stamp: a}, write{kind: "dup", stamp: c}, write{kind: "dup-stored", stamp: again})
	}

	before := db.WriteStats()
	bulkBefore := db.w.bulkWrites.Load()
	release := blockWriter(t, db)
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Go(func() {
			if w.cert != nil {
				errs[i] = db.InsertCertificate(ctx, w.cert)
			} else {
				errs[i] = f.reg.InsertStamp(ctx, w.stamp)
			}
		})
	}
	waitQueued(t, db, len(writes))
	release()
	wg.Wait()

	wantStamps, wantCerts, dupOK := 0, 0, 0
	for i, w := range writes {
		err := errs[i]
		switch w.kind {
		case "ok":
			wantStamps++
			if err != nil {
				t.Errorf("write %d (good stamp): %v", i, err)
			}
		case "cert":
			wantCerts++
			if err != nil {
				t.Errorf("write %d (certificate): %v", i, err)
			}
		case "refused":
			if !errors.Is(err, seal.ErrStampRefused) {
				t.Errorf("write %d (stamp on %s by %s): %v, want ErrStampRefused", i, w.stamp.SealID, w.stamp.Principal, err)
			}
		case "dup":
			switch {
			case err == nil:
				dupOK++
				wantStamps++
			case !errors.Is(err, ErrDuplicate):
				t.Errorf("write %d (same signature twice): %v, want nil or ErrDuplicate", i, err)
			}
		case "dup-stored":
			if !errors.Is(err, ErrDuplicate) {
				t.Errorf("write %d (id of a stored stamp): %v, want ErrDuplicate", i, err)
			}
		}
	}
	if duplicates && dupOK != 1 {
		t.Errorf("%d of two stamps with one signature succeeded, want 1", dupOK)
	}
	if n := countRows(t, db, "SELECT COUNT(*) FROM stamps") - stampsBefore; n != wantStamps {
		t.Errorf("%d stamps stored, want %d", n, wantStamps)
	}
	if n := countRows(t, db, "SELECT COUNT(*) FROM certificates") - certsBefore; n != wantCerts {
		t.Errorf("%d certificates stored, want %d", n, wantCerts)
	}
	verifyChain(t, db)
	entries := stampEntries(t, db)
	if n := len(entries) - entriesBefore; n != wantStamps {
		t.Errorf("%d new stamp audit entries, want %d", n, wantStamps)
	}
	for i, w := range writes {
		if w.stamp == nil || w.kind == "dup-stored" {
			continue
		}
		if _, ok := entries["stamp/"+w.stamp.ID]; ok != (errs[i] == nil) {
			t.Errorf("write %d (%s): audit entry %v, error %v", i, w.kind, ok, errs[i])
		}
		_, serr := f.reg.StampBySignature(ctx, w.stamp.Signature)
		if errs[i] == nil && serr != nil {
			t.Errorf("write %d (%s) succeeded but its stamp is not stored: %v", i, w.kind, serr)
		}
		if w.kind == "refused" && !errors.Is(serr, seal.ErrNotFound) {
			t.Errorf("write %d (refused) stored: %v", i, serr)
		}
	}
	st := db.WriteStats()
	bulked := db.w.bulkWrites.Load() - bulkBefore
	switch {
	case !bulk && bulked != 0:
		t.Errorf("%d writes combined with the combined write off", bulked)
	case bulk && !duplicates:
		// Refusals are outcomes, not failures: the batch commits at once,
		// every stamp and certificate through the combined write.
		if st.FailedGroups != before.FailedGroups || st.Batches-before.Batches != 2 { // the blocking write and the batch
			t.Errorf("%d commits and %d failed groups, want 2 and 0", st.Batches-before.Batches, st.FailedGroups-before.FailedGroups)
		}
		if want := uint64(len(writes)); bulked != want {
			t.Errorf("%d writes combined, want %d", bulked, want)
		}
	}
}

// TestStampsWhileStatusChanges stamps from many callers while the seal is
// suspended and resumed over and over, with the writers PostgreSQL has:
// every stamp is either recorded or refused (never a deadlock or another
// error), and exactly the recorded ones have audit entries.
func TestStampsWhileStatusChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := openDB(t, b.newDSN(t), Options{Now: newTestClock().Now})
		ctx := context.Background()
		mustInsertCA(t, db, "issuing")
		holder := testCert("issuing")
		holder.Profile = "seal-signer"
		mustInsertCert(t, db, holder)
		maker := &ca.SignerRecord{ID: "seal-maker-1", CAID: "issuing", Purpose: ca.PurposeSealMaker, KeyRef: "soft:m",
			DER: randBytes(500), Serial: randSerial(), NotBefore: testTime, NotAfter: testTime.AddDate(3, 0, 0)}
		if err := db.InsertSigner(ctx, maker); err != nil {
			t.Fatal(err)
		}
		reg, err := NewSeals(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
		f := &sealFixture{db: db, reg: reg, holder: holder, maker: maker.ID}
		f.insert(t, f.record("s1", "E1"), "oa")

		stop := make(chan struct{})
		toggled := make(chan error, 1)
		go func() {
			suspend := seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealActive}, To: seal.SealSuspended}
			resume := seal.StatusChange{ID: "s1", From: []seal.SealState{seal.SealSuspended}, To: seal.SealActive}
			for {
				select {
				case <-stop:
					_, err := reg.SetSealStatus(ctx, resume)
					if errors.Is(err, seal.ErrStateConflict) {
						err = nil
					}
					toggled <- err
					return
				default:
				}
				for _, ch := range []seal.StatusChange{suspend, resume} {
					if _, err := reg.SetSealStatus(ctx, ch); err != nil {
						toggled <- err
						return
					}
				}
			}
		}()
		var recorded, refused atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for range 15 {
					err := reg.InsertStamp(ctx, testStamp(randHex(8), "s1", "oa"))
					switch {
					case err == nil:
						recorded.Add(1)
					case errors.Is(err, seal.ErrStampRefused):
						refused.Add(1)
					default:
						t.Errorf("stamp: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(stop)
		if err := <-toggled; err != nil {
			t.Fatalf("status changes: %v", err)
		}
		t.Logf("%d stamps recorded, %d refused", recorded.Load(), refused.Load())
		if n := countRows(t, db, "SELECT COUNT(*) FROM stamps"); int64(n) != recorded.Load() {
			t.Fatalf("%d stamps stored, %d recorded", n, recorded.Load())
		}
		verifyChain(t, db)
		if n := len(stampEntries(t, db)); int64(n) != recorded.Load() {
			t.Fatalf("%d stamp audit entries, %d recorded", n, recorded.Load())
		}
	})
}
