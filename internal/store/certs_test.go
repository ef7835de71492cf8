package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/ca"
)

func TestCertificateRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")

		tests := []struct {
			name string
			edit func(c *ca.Certificate)
		}{
			{"plain", func(c *ca.Certificate) {}},
			{"no SANs", func(c *ca.Certificate) { c.SANs = nil }},
			{"many SANs", func(c *ca.Certificate) { c.SANs = []string{"a.gov.cn", "b.gov.cn", "10.0.0.1", "邮件@例子.中国"} }},
			{"inserted revoked", func(c *ca.Certificate) {
				c.Status, c.Reason = ca.StatusRevoked, 1
				c.RevokedAt, c.InvalidityDate = testTime.Add(time.Hour), testTime.Add(time.Minute)
			}},
			{"single digit serial", func(c *ca.Certificate) { c.Serial = "7" }},
			{"explicit created_at", func(c *ca.Certificate) { c.CreatedAt = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := testCert("root")
				tt.edit(c)
				mustInsertCert(t, db, c)
				if c.CreatedAt.IsZero() || c.Status == "" {
					t.Fatal("InsertCertificate did not fill CreatedAt and Status")
				}
				got, err := db.Certificate(ctx, c.CAID, c.Serial)
				if err != nil {
					t.Fatal(err)
				}
				want := *c
				if len(want.SANs) == 0 {
					want.SANs = nil
				}
				for _, p := range []*time.Time{&want.NotBefore, &want.NotAfter, &want.RevokedAt, &want.InvalidityDate, &want.CreatedAt} {
					if !p.IsZero() {
						*p = p.UTC()
					}
				}
				if !reflect.DeepEqual(*got, want) {
					t.Fatalf("round trip:\n got %+v\nwant %+v", *got, want)
				}
			})
		}
		if _, err := db.Certificate(ctx, "root", "abc"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("missing certificate: %v, want ErrNotFound", err)
		}
	})
}

func TestInsertCertificateRejects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		tests := []struct {
			name string
			edit func(c *ca.Certificate)
			want error
		}{
			{"upper-case serial", func(c *ca.Certificate) { c.Serial = "ABC" }, ErrInvalid},
			{"leading zero", func(c *ca.Certificate) { c.Serial = "0abc" }, ErrInvalid},
			{"non-hex serial", func(c *ca.Certificate) { c.Serial = "xyz" }, ErrInvalid},
			{"empty serial", func(c *ca.Certificate) { c.Serial = "" }, ErrInvalid},
			{"no CA", func(c *ca.Certificate) { c.CAID = "" }, ErrInvalid},
			{"no DER", func(c *ca.Certificate) { c.DER = nil }, ErrInvalid},
			{"no validity", func(c *ca.Certificate) { c.NotAfter = time.Time{} }, ErrInvalid},
			{"bad status", func(c *ca.Certificate) { c.Status = "expired" }, ErrInvalid},
			{"unknown CA", func(c *ca.Certificate) { c.CAID = "ghost" }, ca.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := testCert("root")
				tt.edit(c)
				if err := db.InsertCertificate(ctx, c); !errors.Is(err, tt.want) {
					t.Fatalf("InsertCertificate = %v, want %v", err, tt.want)
				}
			})
		}
		if err := db.InsertCertificate(ctx, nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("nil certificate: %v", err)
		}
		if n := countRows(t, db, "SELECT COUNT(*) FROM certificates"); n != 0 {
			t.Fatalf("%d rejected certificates stored", n)
		}
	})
}

// TestDuplicateSerialInBatch puts duplicates and good certificates in one
// group-commit batch, inserted row by row or with one multi-row INSERT:
// only the duplicates fail, and the others are stored intact.
func TestDuplicateSerialInBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, bulk := range []bool{false, true} {
			t.Run(fmt.Sprintf("bulk=%v", bulk), func(t *testing.T) { testDuplicateSerialInBatch(t, b, bulk) })
		}
	})
}

func testDuplicateSerialInBatch(t *testing.T, b backend, bulk bool) {
	ctx := context.Background()
	db := openDB(t, b.newDSN(t), Options{Writers: 1, bulk: &bulk})
	mustInsertCA(t, db, "root")
	mustInsertCA(t, db, "issuing")
	existing := testCert("root")
	mustInsertCert(t, db, existing)

	twin := testCert("root")
	sameSerialOtherCA := testCert("issuing")
	sameSerialOtherCA.Serial = existing.Serial
	certs := []*ca.Certificate{testCert("root"), existing, testCert("root"), twin, twin, testCert("root"), sameSerialOtherCA}
	wantErr := []bool{false, true, false, false, true, false, false}
	// The two twins race; exactly one of them must win.

	release := blockWriter(t, db)
	errs := make([]error, len(certs))
	done := make(chan int)
	for i, c := range certs {
		cp := *c
		go func() {
			errs[i] = db.InsertCertificate(ctx, &cp)
			done <- i
		}()
	}
	waitQueued(t, db, len(certs))
	before := db.WriteStats()
	release()
	for range certs {
		<-done
	}
	after := db.WriteStats()
	if after.FailedGroups == before.FailedGroups {
		t.Fatal("the duplicates did not share a batch with other writes")
	}
	dups := 0
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ca.ErrDuplicateSerial):
			dups++
			if !wantErr[i] && certs[i] != twin {
				t.Errorf("write %d: unexpected duplicate", i)
			}
		default:
			t.Errorf("write %d: %v", i, err)
		}
	}
	if !errors.Is(errs[1], ca.ErrDuplicateSerial) {
		t.Errorf("re-insert of an existing serial: %v", errs[1])
	}
	if dups != 2 {
		t.Errorf("%d duplicates reported, want 2", dups)
	}
	// 1 existing + 5 distinct new ones.
	if n := countRows(t, db, "SELECT COUNT(*) FROM certificates"); n != 6 {
		t.Fatalf("%d certificates stored, want 6", n)
	}
	for i, c := range certs {
		if wantErr[i] || c == twin {
			continue
		}
		got, err := db.Certificate(ctx, c.CAID, c.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.DER) != string(c.DER) || got.Subject != c.Subject || !slices.Equal(got.SANs, c.SANs) ||
			!got.NotAfter.Equal(c.NotAfter) || got.Status != ca.StatusGood {
			t.Fatalf("write %d stored as %+v", i, got)
		}
	}
}

func TestCertificatesListing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		mustInsertCA(t, db, "issuing")

		// 120 certificates across CAs, departments, profiles and statuses;
		// pairs share a created_at to exercise the tie-breakers.
		var all []ca.Certificate
		base := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
		err := db.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
			for i := range 120 {
				c := testCert([]string{"root", "issuing"}[i%2])
				c.Department = []string{"dept-a", "dept-b", "dept-c"}[i%3]
				c.Profile = []string{"server", "client", "seal", "person"}[i%4]
				c.Status = []ca.Status{ca.StatusGood, ca.StatusGood, ca.StatusRevoked, ca.StatusHold, ca.StatusGood}[i%5]
				c.CreatedAt = base.Add(time.Duration(i/2*2) * time.Second) // pairs share a time
				if i%20 < 2 {
					// Same serial in both CAs at the same time: only ca_id
					// orders these two.
					c.Serial = fmt.Sprintf("%x", 0x1000+i/2)
				}
				if err := db.InsertCertificateTx(ctx, tx, c); err != nil {
					return err
				}
				all = append(all, *c)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(all, func(a, b ca.Certificate) int {
			return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.Serial, a.Serial), cmp.Compare(b.CAID, a.CAID))
		})

		tests := []struct {
			name string
			f    ca.Filter
			keep func(c ca.Certificate) bool
		}{
			{"all", ca.Filter{}, func(ca.Certificate) bool { return true }},
			{"by CA", ca.Filter{CAID: "issuing"}, func(c ca.Certificate) bool { return c.CAID == "issuing" }},
			{"by status", ca.Filter{Status: ca.StatusHold}, func(c ca.Certificate) bool { return c.Status == ca.StatusHold }},
			{"by department", ca.Filter{Department: "dept-b"}, func(c ca.Certificate) bool { return c.Department == "dept-b" }},
			{"by profile", ca.Filter{Profile: "seal"}, func(c ca.Certificate) bool { return c.Profile == "seal" }},
			{"combined", ca.Filter{CAID: "root", Status: ca.StatusGood, Department: "dept-a"}, func(c ca.Certificate) bool {
				return c.CAID == "root" && c.Status == ca.StatusGood && c.Department == "dept-a"
			}},
			{"nothing", ca.Filter{Profile: "none"}, func(ca.Certificate) bool { return false }},
		}
		for _, tt := range tests {
			for _, limit := range []int{1, 7, 1000} {
				t.Run(fmt.Sprintf("%s/limit=%d", tt.name, limit), func(t *testing.T) {
					var want []string
					for _, c := range all {
						if tt.keep(c) {
							want = append(want, c.CAID+"/"+c.Serial)
						}
					}
					var got []string
					f := tt.f
					f.Limit = limit
					for pages := 0; ; pages++ {
						if pages > 200 {
							t.Fatal("pagination does not end")
						}
						page, next, err := db.Certificates(ctx, f)
						if err != nil {
							t.Fatal(err)
						}
						if len(page) > min(limit, MaxLimit) {
							t.Fatalf("page of %d > limit %d", len(page), limit)
						}
						for _, c := range page {
							got = append(got, c.CAID+"/"+c.Serial)
						}
						if next == "" {
							break
						}
						if len(page) == 0 {
							t.Fatal("empty page with a next cursor")
						}
						f.Cursor = next
					}
					if !slices.Equal(got, want) {
						t.Fatalf("listing:\n got %v\nwant %v", got, want)
					}
				})
			}
		}

		t.Run("default limit", func(t *testing.T) {
			page, next, err := db.Certificates(ctx, ca.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) != DefaultLimit || next == "" {
				t.Fatalf("default page: %d rows, next %q", len(page), next)
			}
		})
		t.Run("full rows", func(t *testing.T) {
			page, _, err := db.Certificates(ctx, ca.Filter{Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(page[0], all[0]) {
				t.Fatalf("listed row differs:\n got %+v\nwant %+v", page[0], all[0])
			}
		})
		for _, bad := range []string{"!!!", "e30", "bm90IGpzb24"} { // not base64, {}, "not json"
			if _, _, err := db.Certificates(ctx, ca.Filter{Cursor: bad}); !errors.Is(err, ErrInvalidCursor) {
				t.Errorf("cursor %q: %v, want ErrInvalidCursor", bad, err)
			}
		}
		if _, _, err := db.Certificates(ctx, ca.Filter{Status: "bogus"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad status filter: %v, want ErrInvalid", err)
		}
	})
}

func TestCertificatesMaxLimit(t *testing.T) {
	db, _ := newDB(t, sqliteBackend())
	ctx := context.Background()
	mustInsertCA(t, db, "root")
	err := db.InTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		for range MaxLimit + 1 {
			c := testCert("root")
			c.DER = []byte{1}
			if err := db.InsertCertificateTx(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	page, next, err := db.Certificates(ctx, ca.Filter{Limit: 10 * MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != MaxLimit || next == "" {
		t.Fatalf("got %d rows (next %q), want %d and a cursor", len(page), next, MaxLimit)
	}
}

// TestQueryPlans checks that SQLite answers the listing and CRL queries
// from the intended index, without scanning or sorting the table.
func TestQueryPlans(t *testing.T) {
	db, _ := newDB(t, sqliteBackend())
	cur := cursor{CreatedAt: 1, Serial: "1", CAID: "x"}.encode()
	tests := []struct {
		f     ca.Filter
		index string
	}{
		{ca.Filter{}, "certificates_created"},
		{ca.Filter{CAID: "x"}, "certificates_ca_created"},
		{ca.Filter{Status: ca.StatusGood}, "certificates_created"},
		{ca.Filter{Status: ca.StatusRevoked}, "certificates_revoked_created"},
		{ca.Filter{Status: ca.StatusHold, Cursor: cur}, "certificates_revoked_created"},
		{ca.Filter{Department: "d"}, "certificates_department_created"},
		{ca.Filter{Profile: "p"}, "certificates_profile_created"},
		{ca.Filter{Cursor: cur}, "certificates_created"},
		{ca.Filter{CAID: "x", Cursor: cur}, "certificates_ca_created"},
		{ca.Filter{Department: "d", Cursor: cur}, "certificates_department_created"},
	}
	for _, tt := range tests {
		q, args, err := db.listQuery(tt.f, DefaultLimit)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, db, tt.index, q, args...)
	}
	// The CRL scan must not touch the table rows (1 KB of DER each): an
	// index-only scan is what keeps a 1M-entry CRL to seconds.
	p := checkPlan(t, db, "certificates_crl", crlEntriesSQL, "x", 0, 1<<40)
	if !strings.Contains(p, "COVERING INDEX certificates_crl") {
		t.Errorf("CRL query plan %q is not an index-only scan", p)
	}
}

func checkPlan(t *testing.T, db *DB, index, q string, args ...any) string {
	t.Helper()
	rows, err := db.SQL().Queryx("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	p := strings.Join(plan, "; ")
	uses := func(kind string) bool {
		return strings.Contains(p, kind+index+" ") || strings.HasSuffix(p, kind+index)
	}
	if !uses("USING INDEX ") && !uses("USING COVERING INDEX ") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("query\n%s\nplan %q, want a walk of %s", q, p, index)
	}
	return p
}

func TestRevokeRules(t *testing.T) {
	type step struct {
		op      string // "revoke" or "unhold"
		reason  int
		want    error
		status  ca.Status
		reason2 int // stored reason afterwards
		events  int // total events afterwards
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"revoke, repeat is idempotent", []step{
			{"revoke", 1, nil, ca.StatusRevoked, 1, 1},
			{"revoke", 1, nil, ca.StatusRevoked, 1, 1},
		}},
		{"revoked cannot change reason", []step{
			{"revoke", 4, nil, ca.StatusRevoked, 4, 1},
			{"revoke", 1, ca.ErrAlreadyRevoked, ca.StatusRevoked, 4, 1},
			{"revoke", 6, ca.ErrAlreadyRevoked, ca.StatusRevoked, 4, 1},
		}},
		{"hold, repeat, then revoke", []step{
			{"revoke", 6, nil, ca.StatusHold, 6, 1},
			{"revoke", 6, nil, ca.StatusHold, 6, 1},
			{"revoke", 1, nil, ca.StatusRevoked, 1, 2},
			{"unhold", 0, ca.ErrNotOnHold, ca.StatusRevoked, 1, 2},
		}},
		{"hold and unhold", []step{
			{"revoke", 6, nil, ca.StatusHold, 6, 1},
			{"unhold", 0, nil, ca.StatusGood, 0, 2},
			{"unhold", 0, ca.ErrNotOnHold, ca.StatusGood, 0, 2},
			{"revoke", 6, nil, ca.StatusHold, 6, 3},
		}},
		{"unhold good", []step{
			{"unhold", 0, ca.ErrNotOnHold, ca.StatusGood, 0, 0},
		}},
		{"invalid reasons", []step{
			{"revoke", 7, ErrInvalid, ca.StatusGood, 0, 0},
			{"revoke", 8, ErrInvalid, ca.StatusGood, 0, 0},
			{"revoke", 11, ErrInvalid, ca.StatusGood, 0, 0},
			{"revoke", -1, ErrInvalid, ca.StatusGood, 0, 0},
			{"revoke", 0, nil, ca.StatusRevoked, 0, 1},
		}},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := testCert("root")
				mustInsertCert(t, db, c)
				for i, s := range tt.steps {
					at := testTime.Add(time.Duration(i+1) * time.Hour)
					var got *ca.Certificate
					var err error
					if s.op == "revoke" {
						got, err = db.Revoke(ctx, ca.Revocation{CAID: "root", Serial: c.Serial, Reason: s.reason, At: at,
							InvalidityDate: testTime, By: "op"})
					} else {
						got, err = db.Unhold(ctx, "root", c.Serial, "op", at)
					}
					if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
						t.Fatalf("step %d %s(%d) = %v, want %v", i, s.op, s.reason, err, s.want)
					}
					stored, err2 := db.Certificate(ctx, "root", c.Serial)
					if err2 != nil {
						t.Fatal(err2)
					}
					if err == nil && !reflect.DeepEqual(got, stored) {
						t.Fatalf("step %d returned %+v, stored %+v", i, got, stored)
					}
					if stored.Status != s.status || stored.Reason != s.reason2 {
						t.Fatalf("step %d: stored %s/%d, want %s/%d", i, stored.Status, stored.Reason, s.status, s.reason2)
					}
					if stored.Status == ca.StatusGood && (!stored.RevokedAt.IsZero() || !stored.InvalidityDate.IsZero()) {
						t.Fatalf("step %d: good certificate keeps revocation times", i)
					}
					if stored.Status != ca.StatusGood && (stored.RevokedAt.IsZero() || !stored.InvalidityDate.Equal(testTime)) {
						t.Fatalf("step %d: revoked without times: %+v", i, stored)
					}
					events, err := db.RevocationEvents(ctx, "root", c.Serial)
					if err != nil {
						t.Fatal(err)
					}
					if len(events) != s.events {
						t.Fatalf("step %d: %d events, want %d: %+v", i, len(events), s.events, events)
					}
					for j, e := range events {
						if e.Seq != int64(j+1) || e.By != "op" {
							t.Fatalf("event %d = %+v", j, e)
						}
					}
				}
			})
		}
		t.Run("first revocation time kept on repeat", func(t *testing.T) {
			c := testCert("root")
			mustInsertCert(t, db, c)
			first, err := db.Revoke(ctx, ca.Revocation{CAID: "root", Serial: c.Serial, Reason: 1, At: testTime})
			if err != nil {
				t.Fatal(err)
			}
			again, err := db.Revoke(ctx, ca.Revocation{CAID: "root", Serial: c.Serial, Reason: 1, At: testTime.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if !again.RevokedAt.Equal(first.RevokedAt) || !first.RevokedAt.Equal(testTime) {
				t.Fatalf("revocation time moved: %v then %v", first.RevokedAt, again.RevokedAt)
			}
		})
		t.Run("missing", func(t *testing.T) {
			if _, err := db.Revoke(ctx, ca.Revocation{CAID: "root", Serial: "abc", Reason: 1}); !errors.Is(err, ca.ErrNotFound) {
				t.Fatalf("Revoke(missing) = %v", err)
			}
			if _, err := db.Unhold(ctx, "root", "abc", "", time.Time{}); !errors.Is(err, ca.ErrNotFound) {
				t.Fatalf("Unhold(missing) = %v", err)
			}
		})
	})
}

// TestConcurrentRevokeOneEvent revokes one certificate from many
// goroutines at once: every call succeeds and exactly one event exists.
func TestConcurrentRevokeOneEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		mustInsertCA(t, db, "root")
		c := testCert("root")
		mustInsertCert(t, db, c)
		errs := make(chan error, 16)
		for range cap(errs) {
			go func() {
				_, err := db.Revoke(ctx, ca.Revocation{CAID: "root", Serial: c.Serial, Reason: 3})
				errs <- err
			}()
		}
		for range cap(errs) {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := countRows(t, db, "SELECT COUNT(*) FROM revocation_events"); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
	})
}
