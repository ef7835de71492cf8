// Command issuebench writes the request bodies of the HTTP issuance load
// benchmark (scripts/bench-issue.sh). It is a benchmark tool, not part of
// gmtrust.
//
//	issuebench -n 256 -alg sm2 -profile staff-sign -department bench -out bodies.txt
//
// writes n JSON bodies for POST /api/v1/certificates, one per line, each
// with the CSR of a fresh key (SM2 with the default distinguishing ID, or
// ECDSA P-256), for the wrk script scripts/issue-post.lua to replay. The
// keys are thrown away: the benchmark measures the CA, not the client.
package main

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func main() {
	n := flag.Int("n", 256, "number of bodies")
	alg := flag.String("alg", "sm2", "key algorithm of the CSRs: sm2 or ecdsa-p256")
	profile := flag.String("profile", "staff-sign", "certificate profile")
	dept := flag.String("department", "bench", "department")
	out := flag.String("out", "bodies.txt", "output file")
	flag.Parse()
	if err := write(*out, *n, *alg, *profile, *dept); err != nil {
		fmt.Fprintln(os.Stderr, "issuebench:", err)
		os.Exit(1)
	}
}

func write(path string, n int, alg, profile, dept string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		var key crypto.Signer
		switch alg {
		case "sm2":
			key, err = sm2.GenerateKey(rand.Reader)
		case "ecdsa-p256":
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		default:
			err = fmt.Errorf("unknown algorithm %q", alg)
		}
		if err != nil {
			f.Close()
			return err
		}
		der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{
			Subject: pkix.Name{CommonName: fmt.Sprintf("load user %d", i), OrganizationalUnit: []string{"省财政厅"}},
		}, key)
		if err != nil {
			f.Close()
			return err
		}
		body, err := json.Marshal(map[string]string{
			"csr":        string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
			"profile":    profile,
			"department": dept,
		})
		if err != nil {
			f.Close()
			return err
		}
		w.Write(body)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
