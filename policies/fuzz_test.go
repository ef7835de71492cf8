package policies

import (
	"errors"
	"net/url"
	"testing"
)

// FuzzCheckRawSubject feeds arbitrary bytes as RawSubject: Check must
// never panic and must refuse with a Violation or accept.
func FuzzCheckRawSubject(f *testing.F) {
	f.Add(rawName(f, at{typ: "CN", value: "张三"}, at{typ: "OU", value: "省财政厅"}))
	f.Add(rawName(f, at{typ: "CN", value: "a"}, at{typ: "emailAddress", value: "a@b.cn"}))
	f.Add([]byte{0x30, 0x02, 0x31, 0x00})
	f.Add([]byte{0x30, 0x80})
	p := profile(f, "staff-sign")
	key := sm2Key(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := p.Check(Request{PublicKey: key, RawSubject: raw})
		if err != nil && !errors.Is(err, ErrPolicy) {
			t.Fatalf("non-policy error %v", err)
		}
	})
}

// FuzzCheckSANs feeds arbitrary SAN strings through server-tls (DNS) and
// a URI-enabled copy: no panics, only Violations.
func FuzzCheckSANs(f *testing.F) {
	for _, s := range []string{"www.example.cn", "*.example.cn", "xn--fiqs8s.cn", "a@b.cn", "https://a.cn/", "", ".", "*", "xn--", "https://[::1]:0/"} {
		f.Add(s)
	}
	p := profile(f, "server-tls")
	p.SANs.Allowed = append(p.SANs.Allowed, SANEmail, SANURI)
	p.SANs.AllowWildcard = true
	key := sm2Key(f)
	f.Fuzz(func(t *testing.T, s string) {
		req := Request{PublicKey: key, DNSNames: []string{s}, EmailAddresses: []string{s}}
		if u, err := url.Parse(s); err == nil {
			req.URIs = []*url.URL{u}
		}
		_, err := p.Check(req)
		if err != nil && !errors.Is(err, ErrPolicy) {
			t.Fatalf("non-policy error %v", err)
		}
	})
}
