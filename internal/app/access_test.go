package app_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gmtrust/gmtrust/ca"
	"github.com/gmtrust/gmtrust/hsm"
	"github.com/gmtrust/gmtrust/internal/api"
	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/internal/store"
)

// testClock is real time plus an offset the test moves.
type testClock struct{ offset time.Duration }

func (c *testClock) Now() time.Time { return time.Now().Add(c.offset) }

func openTestApp(t *testing.T, alg hsm.Algorithm, clk *testClock) *app.App {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "Access CA", Algorithm: alg, Getenv: testEnv}); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: testEnv, Logger: quietLogger(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestTokenAuth(t *testing.T) {
	clk := &testClock{}
	a := openTestApp(t, hsm.ECDSAP256, clk)
	ctx := context.Background()
	x, err := a.NewAccessAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if err := x.CreatePrincipal(ctx, &store.Principal{Name: "ra", Department: "czt", Roles: []string{"ra-officer", "auditor"}}); err != nil {
		t.Fatal(err)
	}
	good, tok, err := x.CreateToken(ctx, "ra", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(good, app.TokenPrefix) || len(good) < 40 || !strings.HasPrefix(tok.ID, "ra-") {
		t.Fatalf("token %q id %q", good, tok.ID)
	}
	revoked, rtok, _ := x.CreateToken(ctx, "ra", time.Hour)
	if err := x.RevokeToken(ctx, rtok.ID); err != nil {
		t.Fatal(err)
	}
	auth := &app.TokenAuth{Store: a.Store, Now: clk.Now}

	p, err := auth.Authenticate(ctx, good)
	if err != nil || p.Name != "ra" || p.Department != "czt" || !slices.Equal(p.Roles, []string{"auditor", "ra-officer"}) || p.Credential != "token/"+tok.ID {
		t.Fatalf("good token: %+v %v", p, err)
	}
	for name, secret := range map[string]string{
		"unknown":     app.TokenPrefix + "AAAA",
		"not ours":    "Bearer-ish",
		"much longer": app.TokenPrefix + strings.Repeat("A", 300),
	} {
		if p, err := auth.Authenticate(ctx, secret); !errors.Is(err, api.ErrUnauthenticated) || p != nil {
			t.Errorf("%s token: %+v %v", name, p, err)
		}
	}
	// Refusals that name the principal, so that failures count against it.
	if p, err := auth.Authenticate(ctx, revoked); !errors.Is(err, api.ErrUnauthenticated) || p == nil || p.Name != "ra" {
		t.Errorf("revoked token: %+v %v", p, err)
	}
	yes, no := true, false
	if _, err := x.UpdatePrincipal(ctx, "ra", store.PrincipalUpdate{Disabled: &yes}); err != nil {
		t.Fatal(err)
	}
	if p, err := auth.Authenticate(ctx, good); !errors.Is(err, api.ErrUnauthenticated) || p == nil || p.Name != "ra" {
		t.Errorf("disabled principal: %+v %v", p, err)
	}
	if _, err := x.UpdatePrincipal(ctx, "ra", store.PrincipalUpdate{Disabled: &no, Roles: []string{"auditor"}}); err != nil {
		t.Fatal(err)
	}
	// A role change applies to the next request.
	if p, err := auth.Authenticate(ctx, good); err != nil || !slices.Equal(p.Roles, []string{"auditor"}) {
		t.Errorf("after a role change: %+v %v", p, err)
	}
	clk.offset = time.Hour + time.Second
	if p, err := auth.Authenticate(ctx, good); !errors.Is(err, api.ErrUnauthenticated) || p == nil {
		t.Errorf("expired token: %+v %v", p, err)
	}
}

func TestAccessAdminChecks(t *testing.T) {
	a := openTestApp(t, hsm.ECDSAP256, &testClock{})
	ctx := context.Background()
	x, err := a.NewAccessAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if err := x.CreatePrincipal(ctx, &store.Principal{Name: "p", Roles: []string{"root"}}); !errors.Is(err, app.ErrInvalidAccess) {
		t.Fatalf("unknown role: %v", err)
	}
	if err := x.CreatePrincipal(ctx, &store.Principal{Name: "p", Roles: []string{"auditor"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.UpdatePrincipal(ctx, "p", store.PrincipalUpdate{Roles: []string{"superuser"}}); !errors.Is(err, app.ErrInvalidAccess) {
		t.Fatalf("update to an unknown role: %v", err)
	}
	for _, ttl := range []time.Duration{time.Second, app.MaxTokenTTL + time.Hour, -time.Hour} {
		if _, _, err := x.CreateToken(ctx, "p", ttl); !errors.Is(err, app.ErrInvalidAccess) {
			t.Errorf("ttl %s: %v", ttl, err)
		}
	}
	if _, _, err := x.CreateToken(ctx, "nobody", 0); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("token for nobody: %v", err)
	}
	_, tok, err := x.CreateToken(ctx, "p", 0)
	if err != nil || !tok.ExpiresAt.Equal(tok.CreatedAt.Add(app.DefaultTokenTTL)) {
		t.Fatalf("default ttl: %+v %v", tok, err)
	}
	if err := x.CreatePrincipal(ctx, &store.Principal{Name: "q", Roles: []string{"auditor"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.BindCertificate(ctx, store.CertBinding{Kind: store.BindSerial, Value: "00ab", Principal: "q"}); err != nil {
		t.Fatal(err)
	}
	// A binding is removed only through its own principal.
	if err := x.UnbindCertificate(ctx, "p", store.BindSerial, "ab"); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("unbind through another principal: %v", err)
	}
	if err := x.UnbindCertificate(ctx, "q", store.BindSerial, "00AB"); err != nil {
		t.Fatalf("unbind: %v", err)
	}
}

// TestAuditCheckpoints: the audit key is made once under the
// audit-signer profile, checkpoints verify against the instance's CAs,
// and a checkpoint signed by another certificate of our own CA (the OCSP
// signer's key) is refused: the signer must be the registered audit key.
func TestAuditCheckpoints(t *testing.T) {
	a := openTestApp(t, hsm.SM2, &testClock{})
	ctx := context.Background()
	cp1, err := a.NewCheckpointer().Checkpoint(ctx)
	if err != nil || cp1 == nil {
		t.Fatalf("first checkpoint: %v %v", cp1, err)
	}
	signers, err := a.Store.Signers(ctx, app.PurposeAudit)
	if err != nil || len(signers) != 1 {
		t.Fatalf("audit signers: %v %v", signers, err)
	}
	c, err := a.Store.Certificate(ctx, signers[0].CAID, signers[0].Serial)
	if err != nil || c.Profile != app.ProfileAuditSigner {
		t.Fatalf("audit certificate: %+v %v", c, err)
	}
	// More entries, another checkpoint with the same key.
	if err := a.Store.AppendAudit(ctx, "test.event", "x", audit.OutcomeSuccess, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.NewCheckpointer().Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := a.Store.Signers(ctx, app.PurposeAudit); len(s) != 1 {
		t.Fatalf("audit key made again: %d signers", len(s))
	}
	v, err := app.AuditVerifier(ctx, a.Store, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, a.Store, v)
	if err != nil || !rep.OK() || rep.Checkpoints != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}

	// Forge a checkpoint with the OCSP signer (our CA, wrong purpose).
	ocsp, err := a.Store.Signers(ctx, ca.PurposeOCSP)
	if err != nil || len(ocsp) == 0 {
		t.Fatal(err)
	}
	signer, err := a.Keys.Signer(ctx, ocsp[0].KeyRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store.AppendAudit(ctx, "test.event", "y", audit.OutcomeSuccess, nil); err != nil {
		t.Fatal(err)
	}
	head, _ := a.Store.AuditHead(ctx)
	forged, err := audit.SignCheckpoint(signer, ocsp[0].DER, head, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store.InsertCheckpoint(ctx, forged); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.Verify(ctx, a.Store, v)
	if err != nil || rep.OK() || rep.First().Kind != audit.KindCheckpoint || rep.First().Seq != head.Seq {
		t.Fatalf("forged checkpoint: %+v %v", rep, err)
	}
}
