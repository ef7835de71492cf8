package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/jmoiron/sqlx"

	"github.com/gmtrust/gmtrust/internal/audit"
	"github.com/gmtrust/gmtrust/internal/config"
	"github.com/gmtrust/gmtrust/internal/store"
	"github.com/gmtrust/gmtrust/internal/testutil"
)

// openStore opens the instance's database directly, as someone with
// database access (an attacker, or the test checking what was stored)
// would.
func (in *instance) openStore() *store.DB {
	in.t.Helper()
	cfg, err := config.Load(in.dir, func(string) string { return "" })
	if err != nil {
		in.t.Fatal(err)
	}
	db, err := store.Open(context.Background(), cfg.DatabaseDSN(in.dir), store.Options{})
	if err != nil {
		in.t.Fatal(err)
	}
	return db
}

// auditVerify runs `gmtrust audit verify --json`: intact says whether it
// exited 0.
type verifyReport struct {
	Intact      bool  `json:"intact"`
	Entries     int64 `json:"entries"`
	Checkpoints int   `json:"checkpoints"`
	Problems    []struct {
		Kind   string `json:"kind"`
		Seq    int64  `json:"seq"`
		Detail string `json:"detail"`
	} `json:"problems"`
}

func (in *instance) auditVerify() verifyReport {
	in.t.Helper()
	out, errOut, err := in.cli("audit", "verify", "--json")
	var rep verifyReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		in.t.Fatalf("audit verify --json: %v (%v)\n%s\n%s", jerr, err, out, errOut)
	}
	if rep.Intact != (err == nil) {
		in.t.Fatalf("audit verify exit %v but intact=%v", err, rep.Intact)
	}
	if err != nil && !errExit(err) {
		in.t.Fatalf("audit verify: %v\n%s", err, errOut)
	}
	return rep
}

func writeCSR(t *testing.T, dir, cn string) string {
	t.Helper()
	csr := testutil.NewCSR(t, testutil.NewKey(t, "ecdsa-p256"), testutil.CSROptions{Subject: pkix.Name{CommonName: cn, Organization: []string{"E2E"}}})
	p := filepath.Join(dir, cn+".csr")
	if err := os.WriteFile(p, csr, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAuditTamper changes, deletes and swaps rows of the audit table
// directly in SQLite and PostgreSQL; `gmtrust audit verify` must exit
// non-zero naming the entry, and pass again once the rows are restored.
// Last, a rewrite that recomputes every hash after the change is caught
// by the signed checkpoint.
func TestAuditTamper(t *testing.T) {
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) { testAuditTamper(t, db.dsn(t)) })
	}
}

func testAuditTamper(t *testing.T, dsn string) {
	in := newInstance(t, initOptions{database: dsn})
	tmp := t.TempDir()
	for i := 0; i < 3; i++ {
		in.must("cert", "issue", "--csr", writeCSR(t, tmp, fmt.Sprintf("staff-%d", i)), "--profile", "staff-sign", "--department", "czt")
	}
	in.must("principal", "add", "oa", "--kind", "service", "--role", "approval-system", "--department", "czt")
	in.must("token", "create", "oa")
	in.must("audit", "checkpoint")
	in.must("principal", "add", "aud", "--role", "auditor")
	rep := in.auditVerify()
	if !rep.Intact || rep.Entries < 12 || rep.Checkpoints != 1 {
		t.Fatalf("fresh log: %+v", rep)
	}

	db := in.openStore()
	defer db.Close()
	sqlDB := db.SQL()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := sqlDB.Exec(db.Rebind(q), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	expect := func(what, kind string, seq int64) {
		t.Helper()
		rep := in.auditVerify()
		if rep.Intact || len(rep.Problems) == 0 || rep.Problems[0].Kind != kind || rep.Problems[0].Seq != seq {
			t.Fatalf("%s: verify says %+v, want %s at entry %d first", what, rep, kind, seq)
		}
		t.Logf("%s: %s at %d: %s", what, kind, seq, rep.Problems[0].Detail)
	}
	restored := func(what string) {
		t.Helper()
		if rep := in.auditVerify(); !rep.Intact {
			t.Fatalf("after restoring %s: %+v", what, rep)
		}
	}

	// Change one field of entry 5.
	var principal string
	if err := sqlDB.Get(&principal, db.Rebind(`SELECT principal FROM audit_log WHERE seq = ?`), 5); err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE audit_log SET principal = 'mallory' WHERE seq = ?`, 5)
	expect("changed", "altered", 5)
	exec(`UPDATE audit_log SET principal = ? WHERE seq = ?`, principal, 5)
	restored("the change")

	// Delete entry 7, then put it back.
	var row struct {
		Seq       int64  `db:"seq"`
		At        int64  `db:"at"`
		Principal string `db:"principal"`
		Action    string `db:"action"`
		Object    string `db:"object"`
		Outcome   string `db:"outcome"`
		RequestID string `db:"request_id"`
		Details   string `db:"details"`
		PrevHash  []byte `db:"prev_hash"`
		Hash      []byte `db:"hash"`
	}
	if err := sqlDB.Get(&row, db.Rebind(`SELECT * FROM audit_log WHERE seq = ?`), 7); err != nil {
		t.Fatal(err)
	}
	exec(`DELETE FROM audit_log WHERE seq = ?`, 7)
	expect("deleted", "deleted", 7)
	exec(`INSERT INTO audit_log (seq, at, principal, action, object, outcome, request_id, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row.Seq, row.At, row.Principal, row.Action, row.Object, row.Outcome, row.RequestID, row.Details, row.PrevHash, row.Hash)
	restored("the deleted entry")

	// Swap entries 9 and 10, then swap them back.
	swap := func() {
		exec(`UPDATE audit_log SET seq = -1 WHERE seq = 9`)
		exec(`UPDATE audit_log SET seq = 9 WHERE seq = 10`)
		exec(`UPDATE audit_log SET seq = 10 WHERE seq = -1`)
	}
	swap()
	expect("swapped", "reordered", 9)
	swap()
	restored("the order")

	// Cut the tail (the head still remembers it).
	var last int64
	if err := sqlDB.Get(&last, `SELECT MAX(seq) FROM audit_log`); err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.Get(&row, db.Rebind(`SELECT * FROM audit_log WHERE seq = ?`), last); err != nil {
		t.Fatal(err)
	}
	exec(`DELETE FROM audit_log WHERE seq = ?`, last)
	expect("tail cut", "truncated", last)
	exec(`INSERT INTO audit_log (seq, at, principal, action, object, outcome, request_id, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row.Seq, row.At, row.Principal, row.Action, row.Object, row.Outcome, row.RequestID, row.Details, row.PrevHash, row.Hash)
	restored("the tail")

	// A careful attacker changes entry 4 and recomputes every later hash
	// and the head: only the checkpoint (signed with a key the database
	// does not hold) can tell.
	rewriteFrom(t, db, 4)
	rep = in.auditVerify()
	if rep.Intact || rep.Problems[0].Kind != "altered" {
		t.Fatalf("rewritten chain: %+v", rep)
	}
	t.Logf("rewritten chain: %+v", rep.Problems[0])
}

// rewriteFrom changes entry seq and recomputes the hashes of it and every
// later entry, and the head, the way someone who knows the algorithm
// would.
func rewriteFrom(t *testing.T, db *store.DB, seq int64) {
	t.Helper()
	ctx := context.Background()
	var entries []*audit.Entry
	for e, err := range db.AuditEntries(ctx, seq-1) {
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	entries[0].Principal = "mallory"
	prev := entries[0].PrevHash
	err := func() error {
		tx, err := db.SQL().Beginx()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, e := range entries {
			if err := e.Seal(prev); err != nil {
				return err
			}
			prev = e.Hash
			if _, err := tx.Exec(db.Rebind(`UPDATE audit_log SET principal = ?, prev_hash = ?, hash = ? WHERE seq = ?`), e.Principal, e.PrevHash, e.Hash, e.Seq); err != nil {
				return err
			}
		}
		last := entries[len(entries)-1]
		if _, err := tx.Exec(db.Rebind(`UPDATE audit_head SET hash = ? WHERE id = 1 AND seq = ?`), last.Hash, last.Seq); err != nil {
			return err
		}
		return tx.Commit()
	}()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrashAudit kills `gmtrust serve` with SIGKILL while clients issue
// and revoke certificates concurrently, restarts it, and checks that
// every certificate and every revocation in the database has its audit
// entry and every entry its change, that every acknowledged issuance and
// revocation is there, and that the chain verifies.
func TestCrashAudit(t *testing.T) {
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) { testCrashAudit(t, db.dsn(t)) })
	}
}

func testCrashAudit(t *testing.T, dsn string) {
	in := newInstance(t, initOptions{algorithm: "ecdsa-p256", database: dsn})
	in.start()
	csrs := make([][]byte, 4)
	for i := range csrs {
		csrs[i] = testutil.NewCSR(t, testutil.NewKey(t, "ecdsa-p256"), testutil.CSROptions{Subject: pkix.Name{CommonName: fmt.Sprintf("crash %d", i)}})
	}
	var (
		mu      sync.Mutex
		issued  []string // acknowledged with 201
		revoked []string // acknowledged with 200
		stop    atomic.Bool
		wg      sync.WaitGroup
		toRevok = make(chan string, 4096)
	)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				r, err := in.tryDo(http.MethodPost, "/api/v1/certificates", issueReq{CSR: string(csrs[i%len(csrs)]), Profile: "staff-sign", Department: "czt"})
				if err != nil || r.status != http.StatusCreated {
					continue // the server died under us
				}
				var out issueResp
				if json.Unmarshal(r.body, &out) != nil {
					continue
				}
				mu.Lock()
				issued = append(issued, out.Serial)
				mu.Unlock()
				if i%3 == 0 {
					select {
					case toRevok <- out.Serial:
					default:
					}
				}
			}
		}()
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var s string
				select {
				case s = <-toRevok:
				case <-time.After(10 * time.Millisecond):
					continue
				}
				r, err := in.tryDo(http.MethodPost, "/api/v1/certificates/"+s+"/revoke", map[string]string{"reason": "superseded"})
				if err == nil && r.status == http.StatusOK {
					mu.Lock()
					revoked = append(revoked, s)
					mu.Unlock()
				}
			}
		}()
	}
	// Let the load build up, then pull the plug mid-flight.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n, m := len(issued), len(revoked)
		mu.Unlock()
		if n >= 300 && m >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("load too slow: %d issued, %d revoked in 20 s", n, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.srv.kill()
	in.srv = nil
	stop.Store(true)
	wg.Wait()
	t.Logf("killed with %d issuances and %d revocations acknowledged", len(issued), len(revoked))

	// Restart (recovery of the database happens here), then stop cleanly.
	in.start()
	in.stop()

	db := in.openStore()
	defer db.Close()
	checkAuditMatchesData(t, db, issued, revoked)
	if rep := in.auditVerify(); !rep.Intact {
		t.Fatalf("audit chain after the crash: %+v", rep)
	}
}

// checkAuditMatchesData compares certificates and revocation events with
// their audit entries, both ways.
func checkAuditMatchesData(t *testing.T, db *store.DB, issued, revoked []string) {
	t.Helper()
	sqlDB := db.SQL()
	certs := map[string]bool{} // "certificate/ca/serial"
	bySerial := map[string]string{}
	rows, err := sqlDB.Queryx(`SELECT ca_id, serial, status FROM certificates`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var caID, serial, status string
		if err := rows.Scan(&caID, &serial, &status); err != nil {
			t.Fatal(err)
		}
		certs["certificate/"+caID+"/"+serial] = true
		bySerial[serial] = status
	}
	rows.Close()
	entries := map[string]int{} // action + " " + object -> count
	for e, err := range db.AuditEntries(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		entries[e.Action+" "+e.Object]++
	}
	for obj := range certs {
		if entries["certificate.issue "+obj] != 1 {
			t.Errorf("%s has %d issue entries, want 1", obj, entries["certificate.issue "+obj])
		}
	}
	for k, n := range entries {
		if obj, ok := strings.CutPrefix(k, "certificate.issue "); ok && (!certs[obj] || n != 1) {
			t.Errorf("audit says %s issued %d times; in the database: %v", obj, n, certs[obj])
		}
	}
	events := map[string]int{}
	var evs []struct {
		CAID   string `db:"ca_id"`
		Serial string `db:"serial"`
		Action string `db:"action"`
	}
	if err := sqlx.Select(sqlDB, &evs, `SELECT ca_id, serial, action FROM revocation_events`); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		events["certificate."+ev.Action+" certificate/"+ev.CAID+"/"+ev.Serial]++
	}
	for k, n := range events {
		if entries[k] != n {
			t.Errorf("%s: %d revocation events, %d audit entries", k, n, entries[k])
		}
	}
	for k, n := range entries {
		if strings.HasPrefix(k, "certificate.revoke ") || strings.HasPrefix(k, "certificate.hold ") || strings.HasPrefix(k, "certificate.unhold ") {
			if events[k] != n {
				t.Errorf("%s: %d audit entries, %d revocation events", k, n, events[k])
			}
		}
	}
	for _, s := range issued {
		if _, ok := bySerial[s]; !ok {
			t.Errorf("acknowledged certificate %s is not in the database", s)
		}
	}
	for _, s := range revoked {
		if bySerial[s] != "revoked" {
			t.Errorf("acknowledged revocation of %s: status %q", s, bySerial[s])
		}
	}
}

// TestServeTLS: `gmtrust serve --tls` serves HTTPS with a certificate
// from the instance's CA; a staff certificate issued and bound with the
// CLI authenticates, and is refused as soon as `gmtrust cert revoke` has
// run (no cache, no restart).
func TestServeTLS(t *testing.T) {
	in := newInstance(t, initOptions{algorithm: "ecdsa-p256"})
	tmp := t.TempDir()
	key := testutil.NewKey(t, "ecdsa-p256")
	csr := testutil.NewCSR(t, key, testutil.CSROptions{Subject: pkix.Name{CommonName: "Zhang San", OrganizationalUnit: []string{"czt"}}})
	csrFile := filepath.Join(tmp, "zhang.csr")
	if err := os.WriteFile(csrFile, csr, 0o600); err != nil {
		t.Fatal(err)
	}
	var cert struct {
		Serial      string `json:"serial"`
		Certificate string `json:"certificate"`
	}
	in.mustJSON(&cert, "cert", "issue", "--csr", csrFile, "--profile", "staff-sign", "--department", "czt")
	in.must("principal", "add", "zhang", "--role", "auditor", "--department", "czt", "--bind-serial", cert.Serial)

	blk, _ := pem.Decode([]byte(cert.Certificate))
	roots := x509.NewCertPool()
	var cas []struct {
		Role        string `json:"role"`
		Certificate string `json:"certificate"`
	}
	logf := filepath.Join(tmp, "serve.log")
	lf, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(in.bin, "serve", "--tls", "--data-dir", in.dir, "--listen", in.addr)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("serve log:\n%s", b)
		}
	})
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := insecure.Get("https://" + in.addr + "/api/v1/cas")
		if err == nil {
			if err := json.NewDecoder(resp.Body).Decode(&cas); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve --tls not up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range cas {
		if c.Role == "root" {
			roots.AppendCertsFromPEM([]byte(c.Certificate))
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}},
	}}}
	get := func() int {
		t.Helper()
		resp, err := client.Get("https://" + in.addr + "/api/v1/certificates?limit=1")
		if err != nil {
			t.Fatalf("mTLS request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("client certificate refused: %d", code)
	}
	in.must("cert", "revoke", cert.Serial, "--reason", "keyCompromise")
	if code := get(); code != http.StatusUnauthorized {
		t.Fatalf("revoked client certificate: %d", code)
	}
}

// TestApprovalSystemFlow follows the README: an approval system gets a
// principal and a token from the CLI, a seal administrator grants it a
// seal, and it stamps; it can do nothing else.
func TestApprovalSystemFlow(t *testing.T) {
	in := newInstance(t, initOptions{})
	in.must("principal", "add", "czt-oa", "--kind", "service", "--role", "approval-system", "--department", "czt")
	out := in.must("token", "create", "czt-oa", "--ttl", "24h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	oaToken := lines[len(lines)-1]
	if !strings.HasPrefix(oaToken, "gmt_") || len(oaToken) < 40 {
		t.Fatalf("token create printed %q last", oaToken)
	}
	in.must("principal", "add", "czt-seals", "--role", "seal-admin", "--department", "czt")
	sa := lastLine(in.must("token", "create", "czt-seals"))
	in.start()
	defer in.stop()

	var made struct {
		ID string `json:"id"`
	}
	r := in.do(http.MethodPost, "/api/v1/seals", map[string]any{"name": "财政厅业务专用章", "type": "organization", "department": "czt", "valid_days": 365,
		"picture": map[string]any{"type": "png", "data": base64.StdEncoding.EncodeToString(tinyPNG(t)), "width_mm": 40, "height_mm": 40}}, sa)
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &made) != nil {
		t.Fatalf("seal admin makes a seal: %s", r)
	}
	if r := in.do(http.MethodPost, "/api/v1/seals/"+made.ID+"/grants", map[string]string{"principal": "czt-oa"}, sa); r.status != http.StatusCreated {
		t.Fatalf("grant: %s", r)
	}
	h := sm3.Sum([]byte("approval 2025-0001"))
	var st struct {
		Signature string `json:"signature"`
	}
	r = in.do(http.MethodPost, "/api/v1/seals/"+made.ID+"/stamp", map[string]string{"digest": hex.EncodeToString(h[:]), "property_info": "approval/2025-0001", "approval_ref": "2025-0001"}, oaToken)
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("approval system stamps: %s", r)
	}
	var rep struct {
		Verdict string `json:"verdict"`
	}
	r = in.do(http.MethodPost, "/api/v1/signatures/verify", map[string]string{"signature": st.Signature, "digest": hex.EncodeToString(h[:])}, "")
	if r.status != http.StatusOK || json.Unmarshal(r.body, &rep) != nil || rep.Verdict != "valid" {
		t.Fatalf("anyone verifies: %s", r)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/certificates"},
		{http.MethodPost, "/api/v1/seals/" + made.ID + "/suspend"},
		{http.MethodGet, "/api/v1/audit"},
		{http.MethodPost, "/api/v1/principals/czt-oa/tokens"},
	} {
		if r := in.do(c.method, c.path, map[string]any{}, oaToken); r.status != http.StatusForbidden {
			t.Errorf("approval system %s %s: %s, want 403", c.method, c.path, r)
		}
	}
	var entries []struct {
		Principal string `json:"principal"`
		Action    string `json:"action"`
	}
	in.mustJSON(&entries, "audit", "list", "--action", "seal.")
	var stamped bool
	for _, e := range entries {
		stamped = stamped || (e.Action == "seal.stamp" && e.Principal == "czt-oa")
	}
	if !stamped {
		t.Fatalf("the stamp is not in the audit log: %+v", entries)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tinyPNG(t *testing.T) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < 8; i++ {
		img.Set(i, i, color.NRGBA{R: 200, A: 255})
	}
	var b strings.Builder
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}
