package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm3"

	"github.com/gmtrust/gmtrust/internal/app"
	"github.com/gmtrust/gmtrust/seal"
)

// run runs the CLI in-process and returns stdout, stderr and the exit
// code main would use.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	code := 0
	var ee exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case err != nil:
		errb.WriteString(err.Error())
		code = 1
	}
	return out.String(), errb.String(), code
}

// sealInstance makes an instance with one seal and a stamp over doc, made
// through the service, and returns the data directory, the signature
// file and the root CA certificate (PEM) file.
func sealInstance(t *testing.T, doc []byte) (dir, sigFile, rootPEM string) {
	t.Helper()
	ctx := context.Background()
	base := t.TempDir()
	dir = filepath.Join(base, "data")
	// No GMTRUST_KEY_PASSPHRASE: init writes the passphrase file, which the
	// CLI then finds by itself.
	getenv := func(string) string { return "" }
	if _, err := app.Init(ctx, app.InitParams{Dir: dir, Name: "CLI Test CA", Getenv: getenv}); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, dir, app.Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	seals, err := a.NewSeals(ctx, app.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer seals.Close()
	var pic bytes.Buffer
	if err := png.Encode(&pic, image.NewGray(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	admin := seal.Caller{Name: "admin", Roles: []string{seal.RoleAdmin}}
	made, err := seals.Service.Make(ctx, admin, seal.MakeRequest{
		Name: "测试单位 公章", Type: "organization", Department: "cli", ValidDays: 30, Grants: []string{"admin"},
		Picture: seal.PictureInput{Type: "png", Data: pic.Bytes(), WidthMM: 42, HeightMM: 42},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := sm3.Sum(doc)
	st, err := seals.Service.Stamp(ctx, admin, seal.StampRequest{SealID: made.Record.ID, DataHash: h[:], PropertyInfo: "doc.xml"})
	if err != nil {
		t.Fatal(err)
	}
	sigFile = filepath.Join(base, "stamp.der")
	rootPEM = filepath.Join(base, "root.pem")
	write(t, sigFile, st.DER)
	write(t, rootPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Authority.CAs()[0].DER}))
	return dir, sigFile, rootPEM
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSealVerifyCLI(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./data here
	doc := []byte("<approval id=\"7\">同意</approval>")
	dir, sigFile, rootPEM := sealInstance(t, doc)
	docFile := filepath.Join(filepath.Dir(sigFile), "doc.xml")
	write(t, docFile, doc)

	out, errOut, code := run(t, "seal", "verify", sigFile, "--data-dir", dir, "--document", docFile)
	if code != 0 || !strings.Contains(out, "verdict:   valid") {
		t.Fatalf("valid stamp: exit %d\n%s%s", code, out, errOut)
	}
	for _, c := range []string{"seal_signature", "signature", "data_hash", "chain", "revocation", "seal_status"} {
		if !strings.Contains(out, "  "+c+" ") {
			t.Errorf("text output lacks a line for %s:\n%s", c, out)
		}
	}

	// The same signature as base64 text, checked against a digest.
	der, _ := os.ReadFile(sigFile)
	b64 := filepath.Join(filepath.Dir(sigFile), "stamp.b64")
	write(t, b64, []byte(base64.StdEncoding.EncodeToString(der)+"\n"))
	h := sm3.Sum(doc)
	if _, _, code := run(t, "seal", "verify", b64, "--data-dir", dir, "--digest", strings.ToUpper(hex.EncodeToString(h[:]))); code != 0 {
		t.Fatalf("base64 signature with --digest: exit %d", code)
	}

	// --json: the report, and the exit code still follows the verdict.
	out, _, code = run(t, "seal", "verify", sigFile, "--data-dir", dir, "--document", docFile, "--json")
	var rep struct {
		Verdict string `json:"verdict"`
		Version int    `json:"version"`
		Seal    struct {
			Name, ESID string
			Maker      string `json:"maker"`
		} `json:"seal"`
		Signer string `json:"signer"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if code != 0 || rep.Verdict != "valid" || rep.Version != 4 || rep.Seal.Name != "测试单位 公章" || rep.Seal.Maker == "" || rep.Signer == "" || len(rep.Checks) < 8 {
		t.Fatalf("--json report (exit %d): %+v", code, rep)
	}

	// Tampered: a byte of the signer's signature, or another document.
	bad := bytes.Clone(der)
	bad[len(bad)-2] ^= 1
	badFile := filepath.Join(filepath.Dir(sigFile), "bad.der")
	write(t, badFile, bad)
	if out, _, code := run(t, "seal", "verify", badFile, "--data-dir", dir); code != exitInvalid || !strings.Contains(out, "verdict:   invalid") {
		t.Fatalf("tampered signature: exit %d\n%s", code, out)
	}
	other := filepath.Join(filepath.Dir(sigFile), "other.xml")
	write(t, other, []byte("something else"))
	if _, _, code := run(t, "seal", "verify", sigFile, "--data-dir", dir, "--document", other); code != exitInvalid {
		t.Fatalf("other document: exit %d", code)
	}

	// Without an instance: the root through --trust gives a chain, but
	// no revocation information, so indeterminate; without --trust too.
	for _, args := range [][]string{{"--trust", rootPEM}, nil} {
		out, _, code := run(t, append([]string{"seal", "verify", sigFile, "--document", docFile}, args...)...)
		if code != exitIndeterminate || !strings.Contains(out, "verdict:   indeterminate") || !strings.Contains(out, "instance:  none") {
			t.Fatalf("no instance %v: exit %d\n%s", args, code, out)
		}
	}
	// ./data is used when it holds an instance.
	if err := os.Rename(dir, "data"); err != nil {
		t.Fatal(err)
	}
	if out, _, code := run(t, "seal", "verify", sigFile, "--document", docFile); code != 0 {
		t.Fatalf("with ./data: exit %d\n%s", code, out)
	}
	// A --data-dir without an instance is an error, not a silent downgrade.
	if _, errOut, code := run(t, "seal", "verify", sigFile, "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errOut, "no gmtrust instance") {
		t.Fatalf("empty --data-dir: exit %d %s", code, errOut)
	}
	if _, _, code := run(t, "seal", "verify", sigFile, "--document", docFile, "--digest", "00"); code != 1 {
		t.Fatalf("--document and --digest: exit %d", code)
	}
	// seal list reads the registry.
	if out, _, code := run(t, "seal", "list", "--data-dir", "data"); code != 0 || !strings.Contains(out, "测试单位 公章") || !strings.Contains(out, "active") {
		t.Fatalf("seal list: exit %d\n%s", code, out)
	}
}

// TestSealInspectCLI inspects the real files of seal/testdata, v4 and v1,
// seals and signatures.
func TestSealInspectCLI(t *testing.T) {
	td := filepath.Join("..", "..", "seal", "testdata")
	for _, tc := range []struct {
		file, want string
		version    int
		kind       string
	}{
		{"v4_kinggrid_999_SignedValue.dat", "GOMAIN", 4, "signature"},
		{"v4_ofdrw_UserV4.esl", "", 4, "seal"},
		{"v4_hebeigede_SESealData.DER", "HebeiGede", 4, "seal"},
		{"v1_ofdrw_UserV1.esl", "", 1, "seal"},
		{"v1_dms360_Seal.esl", "", 1, "seal"},
		{"v1_dms360_SignedValue.dat", "", 1, "signature"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(td, tc.file)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := seal.Inspect(raw)
			if err != nil {
				t.Fatal(err)
			}
			picFile := filepath.Join(t.TempDir(), "picture")
			out, errOut, code := run(t, "seal", "inspect", path, "--picture-out", picFile)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, want.Name) || !strings.Contains(out, want.ESID) || !strings.Contains(out, tc.want) ||
				!strings.Contains(out, tc.kind+" v") || !strings.Contains(out, want.Picture.Type) {
				t.Fatalf("output lacks name %q, esID %q, %q or kind:\n%s", want.Name, want.ESID, tc.want, out)
			}
			pic, err := os.ReadFile(picFile)
			if err != nil || len(pic) != want.Picture.Size || len(pic) == 0 {
				t.Fatalf("picture out: %d bytes, %v; want %d", len(pic), err, want.Picture.Size)
			}
			out, _, code = run(t, "seal", "inspect", path, "--json")
			var sum seal.Summary
			if err := json.Unmarshal([]byte(out), &sum); err != nil || code != 0 {
				t.Fatalf("--json: exit %d, %v", code, err)
			}
			if sum.Version != tc.version || sum.Kind != tc.kind || sum.ESID != want.ESID {
				t.Fatalf("--json summary %+v", sum)
			}
		})
	}
	junk := filepath.Join(t.TempDir(), "junk")
	write(t, junk, []byte{0x30, 0x82, 0xff, 0xff, 1})
	if _, errOut, code := run(t, "seal", "inspect", junk); code != 1 || !strings.Contains(errOut, "malformed") {
		t.Fatalf("junk: exit %d %s", code, errOut)
	}
}

// TestSealGrantCLI grants, lists and withdraws who may stamp with a seal,
// and refuses an unknown seal, a malformed principal and withdrawing a
// grant that is not there, changing nothing. Grants are audited as the
// CLI user.
func TestSealGrantCLI(t *testing.T) {
	dir, _, _ := sealInstance(t, []byte("document"))
	out, _, code := run(t, "seal", "list", "--json", "--data-dir", dir)
	var seals []struct {
		ID string `json:"id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &seals) != nil || len(seals) != 1 {
		t.Fatalf("seal list: exit %d\n%s", code, out)
	}
	id := seals[0].ID
	grants := func() []string {
		t.Helper()
		out, errOut, code := run(t, "seal", "grants", id, "--json", "--data-dir", dir)
		var gs []struct {
			Principal string `json:"principal"`
			GrantedBy string `json:"granted_by"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &gs) != nil {
			t.Fatalf("seal grants: exit %d %s\n%s", code, errOut, out)
		}
		var names []string
		for _, g := range gs {
			names = append(names, g.Principal+"/"+g.GrantedBy)
		}
		return names
	}
	if got := grants(); len(got) != 1 || got[0] != "admin/admin" {
		t.Fatalf("grants before: %v", got)
	}
	out, errOut, code := run(t, "seal", "grant", id, "oa-system", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "oa-system may stamp with seal "+id) {
		t.Fatalf("grant: exit %d %s\n%s", code, errOut, out)
	}
	by := "cli:" + currentUser()
	if got := grants(); len(got) != 2 || !slices.Contains(got, "oa-system/"+by) {
		t.Fatalf("grants after grant: %v", got)
	}
	for _, bad := range [][]string{
		{"grant", "no-such-seal", "oa-system"},
		{"grant", id, "not a principal!"},
		{"ungrant", id, "nobody"},
	} {
		if _, errOut, code := run(t, append(append([]string{"seal"}, bad...), "--data-dir", dir)...); code != 1 || errOut == "" {
			t.Errorf("%v: exit %d %q", bad, code, errOut)
		}
	}
	if got := grants(); len(got) != 2 {
		t.Fatalf("refused commands changed the grants: %v", got)
	}
	if out, errOut, code := run(t, "seal", "ungrant", id, "oa-system", "--data-dir", dir); code != 0 || !strings.Contains(out, "no longer") {
		t.Fatalf("ungrant: exit %d %s\n%s", code, errOut, out)
	}
	if got := grants(); len(got) != 1 || got[0] != "admin/admin" {
		t.Fatalf("grants after ungrant: %v", got)
	}
	out, _, code = run(t, "audit", "list", "--json", "--data-dir", dir, "--action", "seal.")
	if code != 0 || !strings.Contains(out, `"seal.grant"`) || !strings.Contains(out, by) {
		t.Fatalf("audit of the grant: exit %d\n%s", code, out)
	}
}
