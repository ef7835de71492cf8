package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gmtrust/gmtrust/ca"
)

func TestCheckPrincipalName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"czt-approval.system_1@prov", true},
		{"张三", true},
		{"", false},
		{"system", false},
		{"cli:root", false},
		{"a b", false},
		{"a/b", false},
		{"a\x00b", false},
		{strings.Repeat("a", MaxPrincipalName+1), false},
	}
	for _, tt := range tests {
		if err := CheckPrincipalName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckPrincipalName(%q) = %v", tt.name, err)
		} else if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckPrincipalName(%q) = %v, want ErrInvalid", tt.name, err)
		}
	}
}

func TestPrincipals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := actorCtx("admin")
		alice := &Principal{Name: "alice", Kind: KindPerson, Department: "czt", Roles: []string{"ra-officer", "auditor", "ra-officer"}}
		if err := db.InsertPrincipal(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertPrincipal(ctx, &Principal{Name: "approvals", Kind: KindService, Department: "gat", Roles: []string{"approval-system"}}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []*Principal{
			nil,
			{Name: "x", Kind: "robot"},
			{Name: "bad name", Kind: KindPerson},
			{Name: "y", Kind: KindPerson, Roles: []string{""}},
		} {
			if err := db.InsertPrincipal(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("InsertPrincipal(%+v) = %v", bad, err)
			}
		}

		got, err := db.Principal(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != KindPerson || got.Department != "czt" || !slices.Equal(got.Roles, []string{"auditor", "ra-officer"}) || got.Disabled {
			t.Fatalf("alice = %+v", got)
		}
		if _, err := db.Principal(ctx, "nobody"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
		all, err := db.Principals(ctx)
		if err != nil || len(all) != 2 || all[0].Name != "alice" || all[1].Name != "approvals" || !slices.Equal(all[1].Roles, []string{"approval-system"}) {
			t.Fatalf("Principals = %+v, %v", all, err)
		}

		// Updates: roles replaced, department moved, disabled.
		dept := "gat"
		p, err := db.UpdatePrincipal(ctx, "alice", PrincipalUpdate{Department: &dept, Roles: []string{"seal-admin"}})
		if err != nil || p.Department != "gat" || !slices.Equal(p.Roles, []string{"seal-admin"}) {
			t.Fatalf("update: %+v %v", p, err)
		}
		yes := true
		if p, err = db.UpdatePrincipal(ctx, "alice", PrincipalUpdate{Disabled: &yes}); err != nil || !p.Disabled {
			t.Fatalf("disable: %+v %v", p, err)
		}
		if got, _ := db.Principal(ctx, "alice"); !got.Disabled || got.Department != "gat" || !slices.Equal(got.Roles, []string{"seal-admin"}) {
			t.Fatalf("stored %+v", got)
		}
		if _, err := db.UpdatePrincipal(ctx, "nobody", PrincipalUpdate{Disabled: &yes}); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("update unknown: %v", err)
		}
		var actions []string
		for _, e := range auditEntries(t, db) {
			actions = append(actions, e.Action+" "+e.Object)
		}
		want := []string{"principal.create principal/alice", "principal.create principal/approvals",
			"principal.update principal/alice", "principal.disable principal/alice"}
		if !slices.Equal(actions, want) {
			t.Fatalf("audited %q, want %q", actions, want)
		}
		verifyChain(t, db)
	})
}

func TestCertBindings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := actorCtx("admin")
		for _, n := range []string{"alice", "bob"} {
			if err := db.InsertPrincipal(ctx, &Principal{Name: n, Kind: KindPerson, Roles: []string{"auditor"}}); err != nil {
				t.Fatal(err)
			}
		}
		const subject = "CN=Zhang San,OU=czt,O=Gov,C=CN"
		if _, err := db.BindCertificate(ctx, CertBinding{Kind: BindSubject, Value: subject, Principal: "alice"}); err != nil {
			t.Fatal(err)
		}
		bb, err := db.BindCertificate(ctx, CertBinding{Kind: BindSerial, Value: "00AB12", Principal: "bob"})
		if err != nil || bb.Value != "ab12" {
			t.Fatalf("serial binding %+v %v", bb, err)
		}
		rejects := []struct {
			b    CertBinding
			want error
		}{
			{CertBinding{Kind: BindSerial, Value: "ab12", Principal: "alice"}, ErrDuplicate},
			{CertBinding{Kind: BindSerial, Value: "zz", Principal: "alice"}, ErrInvalid},
			{CertBinding{Kind: "email", Value: "a@b", Principal: "alice"}, ErrInvalid},
			{CertBinding{Kind: BindSubject, Value: "CN=x", Principal: "nobody"}, ca.ErrNotFound},
		}
		for _, tt := range rejects {
			if _, err := db.BindCertificate(ctx, tt.b); !errors.Is(err, tt.want) {
				t.Errorf("BindCertificate(%+v) = %v, want %v", tt.b, err, tt.want)
			}
		}

		lookups := []struct {
			serial, subject, want string
		}{
			{"ab12", subject, "bob"}, // the serial binding wins
			{"cd34", subject, "alice"},
			{"ab12", "CN=other", "bob"},
			{"cd34", "CN=other", ""},
		}
		for _, l := range lookups {
			p, err := db.PrincipalForCertificate(ctx, l.serial, l.subject)
			switch {
			case l.want == "" && !errors.Is(err, ca.ErrNotFound):
				t.Errorf("%s %q: %v %v, want not found", l.serial, l.subject, p, err)
			case l.want != "" && (err != nil || p.Name != l.want):
				t.Errorf("%s %q: %v %v, want %s", l.serial, l.subject, p, err, l.want)
			}
		}
		bs, err := db.CertBindings(ctx, "alice")
		if err != nil || len(bs) != 1 || bs[0].Value != subject {
			t.Fatalf("bindings of alice: %+v %v", bs, err)
		}
		if err := db.UnbindCertificate(ctx, BindSerial, "AB12"); err != nil {
			t.Fatal(err)
		}
		if err := db.UnbindCertificate(ctx, BindSerial, "ab12"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("unbind twice: %v", err)
		}
		if p, err := db.PrincipalForCertificate(ctx, "ab12", "CN=other"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("after unbind: %v %v", p, err)
		}
		verifyChain(t, db)
	})
}

func TestCreateToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := actorCtx("admin")
		h := sha256.Sum256([]byte("gmt_x"))
		if err := db.CreateToken(ctx, &Token{ID: "t1", Principal: "ghost", Hash: h[:]}); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("token for unknown principal: %v", err)
		}
		if err := db.InsertPrincipal(ctx, &Principal{Name: "svc", Kind: KindService, Roles: []string{"approval-system"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateToken(ctx, &Token{ID: "t1", Principal: "svc", Hash: h[:], ExpiresAt: testTime}); err != nil {
			t.Fatal(err)
		}
		h2 := sha256.Sum256([]byte("gmt_y"))
		if err := db.CreateToken(ctx, &Token{ID: "t2", Principal: "svc", Hash: h2[:]}); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, "t1", testTime); err != nil {
			t.Fatal(err)
		}
		toks, err := db.Tokens(ctx, "svc")
		if err != nil || len(toks) != 2 {
			t.Fatalf("Tokens = %+v %v", toks, err)
		}
		tok, err := db.TokenByID(ctx, "t1")
		if err != nil || tok.RevokedAt.IsZero() || !tok.ExpiresAt.Equal(testTime) {
			t.Fatalf("TokenByID = %+v %v", tok, err)
		}
		if _, err := db.TokenByID(ctx, "nope"); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
		var actions []string
		for _, e := range auditEntries(t, db) {
			actions = append(actions, e.Action+" "+e.Object)
			if strings.Contains(e.Details, "hash") {
				t.Errorf("token hash in the audit log: %s", e.Details)
			}
		}
		want := []string{"principal.create principal/svc", "token.create token/t1", "token.create token/t2", "token.revoke token/t1"}
		if !slices.Equal(actions, want) {
			t.Fatalf("audited %q, want %q", actions, want)
		}
		verifyChain(t, db)
	})
}

// TestMigrationAdminTokens checks the statement of 00004 that turns the
// principals of pre-existing tokens into administrators, run again on a
// database that has tokens but no principals.
func TestMigrationAdminTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		for i, p := range []string{"admin", "admin", "ops"} {
			h := sha256.Sum256([]byte{byte(i)})
			if _, err := db.SQL().Exec(db.Rebind(`INSERT INTO api_tokens (id, principal, hash, created_at) VALUES (?, ?, ?, ?)`),
				"t"+string(rune('0'+i)), p, h[:], int64(100+i)); err != nil {
				t.Fatal(err)
			}
		}
		src, err := migrationsFS.ReadFile("migrations/00004_access.sql")
		if err != nil {
			t.Fatal(err)
		}
		var stmts []string
		for _, s := range strings.Split(string(src), ";") {
			if i := strings.Index(s, "INSERT INTO principal"); i >= 0 {
				stmts = append(stmts, s[i:])
			}
		}
		if len(stmts) != 2 {
			t.Fatalf("found %d principal INSERTs in 00004", len(stmts))
		}
		for _, s := range stmts {
			if _, err := db.SQL().Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		all, err := db.Principals(ctx)
		if err != nil || len(all) != 2 {
			t.Fatalf("principals %+v %v", all, err)
		}
		for _, p := range all {
			if !slices.Equal(p.Roles, []string{"admin"}) || p.CreatedAt.IsZero() {
				t.Errorf("migrated principal %+v", p)
			}
		}
	})
}
