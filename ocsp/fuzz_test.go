package ocsp

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParseRequest feeds ParseRequest arbitrary bytes, seeded with the
// OpenSSL- and x/crypto-made requests in testdata. Besides not panicking,
// it checks that every error wraps ErrMalformed and that whatever parses
// can be answered: echoing its CertIDs and nonce into a response encodes,
// and the encoding decodes to the same CertIDs and nonce.
func FuzzParseRequest(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "req-*.der"))
	if err != nil {
		f.Fatal(err)
	}
	if len(seeds) == 0 {
		f.Fatal("no seed requests in testdata")
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

	f.Fuzz(func(t *testing.T, der []byte) {
		req, err := ParseRequest(der)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if n := len(req.CertIDs); n < 1 || n > MaxCertIDs {
			t.Fatalf("%d CertIDs", n)
		}
		if req.HasNonce != (req.Nonce != nil) {
			t.Fatalf("HasNonce %v with nonce %x", req.HasNonce, req.Nonce)
		}
		if !bytes.Equal(req.Raw, der) {
			t.Fatal("Raw differs from the input")
		}

		singles := make([]SingleResponse, len(req.CertIDs))
		for i, id := range req.CertIDs {
			if id.SerialNumber.Sign() < 0 || id.SerialNumber.BitLen() > 8*maxSerialLen {
				t.Fatalf("CertID %d serial %v", i, id.SerialNumber)
			}
			singles[i] = SingleResponse{CertID: id, Status: Unknown, ThisUpdate: now}
		}
		tbs, err := TBSResponseData(ResponseTemplate{
			Singles:          singles,
			ProducedAt:       now,
			Nonce:            req.Nonce,
			ResponderKeyHash: make([]byte, 20),
		})
		if err != nil {
			t.Fatalf("cannot answer a request that parsed: %v", err)
		}
		var resp Response
		if err := parseResponseData(tbs, &resp); err != nil {
			t.Fatalf("response data does not parse: %v", err)
		}
		if len(resp.Singles) != len(req.CertIDs) || !bytes.Equal(resp.Nonce, req.Nonce) || resp.HasNonce != req.HasNonce {
			t.Fatalf("echo changed: %d singles, nonce %x", len(resp.Singles), resp.Nonce)
		}
		for i, s := range resp.Singles {
			want := req.CertIDs[i]
			if !sameCertID(s.CertID, want) || !bytes.Equal(s.CertID.RawHashAlgorithm, want.RawHashAlgorithm) {
				t.Fatalf("CertID %d echoed as %+v, want %+v", i, s.CertID, want)
			}
		}
	})
}
