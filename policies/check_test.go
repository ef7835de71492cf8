package policies

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

const day = 24 * time.Hour

// TestCheckKeys covers key algorithms, curves, sizes and exponents, and
// the key usage each profile yields per key type. RSA keys are generated
// once here, since that is the slow part of the suite.
func TestCheckKeys(t *testing.T) {
	rsaKey := func(bits int) *rsa.PublicKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	_, edPub, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048 := rsaKey(2048)
	// A curve with P-256's parameters and name that is not elliptic.P256().
	lookalikeCurve := *elliptic.P256().Params()
	lookalike := *ecKey(t, elliptic.P256()).(*ecdsa.PublicKey)
	lookalike.Curve = &lookalikeCurve
	nilCurve := lookalike
	nilCurve.Curve = nil
	keys := map[string]crypto.PublicKey{
		"sm2":     sm2Key(t),
		"p256":    ecKey(t, elliptic.P256()),
		"p384":    ecKey(t, elliptic.P384()),
		"p224":    ecKey(t, elliptic.P224()),
		"p521":    ecKey(t, elliptic.P521()),
		"rsa1024": rsaKey(1024),
		"rsa2048": rsa2048,
		"rsa3072": rsaKey(3072),
		"rsa-e3":  &rsa.PublicKey{N: rsa2048.N, E: 3},
		// Bigger than any key gmtrust accepts; only the size matters here.
		"rsa8200":      &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 8199), big.NewInt(1)), E: 65537},
		"ed25519":      edPub,
		"nil":          nil,
		"nil-rsa":      (*rsa.PublicKey)(nil),
		"rsa-no-N":     &rsa.PublicKey{E: 65537},
		"rsa-by-value": *rsa2048,
		"lookalike":    &lookalike,
		"nil-curve":    &nilCurve,
	}

	const (
		ds = x509.KeyUsageDigitalSignature
		nr = x509.KeyUsageContentCommitment
		ke = x509.KeyUsageKeyEncipherment
		de = x509.KeyUsageDataEncipherment
		ka = x509.KeyUsageKeyAgreement
	)
	tests := []struct {
		profile string
		key     string
		rule    string
		wantKU  x509.KeyUsage
		wantAlg string
	}{
		{"staff-sign", "sm2", "", ds | nr, AlgorithmSM2},
		{"staff-sign", "p256", "", ds | nr, AlgorithmECDSA},
		{"staff-sign", "p384", "", ds | nr, AlgorithmECDSA},
		{"staff-sign", "rsa2048", "", ds | nr, AlgorithmRSA},
		{"staff-sign", "rsa3072", "", ds | nr, AlgorithmRSA},
		{"staff-sign", "p224", RuleKeyCurve, 0, ""},
		{"staff-sign", "p521", RuleKeyCurve, 0, ""},
		{"staff-sign", "rsa1024", RuleKeySize, 0, ""},
		{"staff-sign", "rsa8200", RuleKeySize, 0, ""},
		{"staff-sign", "rsa-e3", RuleKeyExponent, 0, ""},
		{"staff-sign", "ed25519", RuleKeyAlgorithm, 0, ""},
		{"staff-sign", "nil", RuleKeyAlgorithm, 0, ""},
		{"staff-sign", "nil-rsa", RuleKeyAlgorithm, 0, ""},
		{"staff-sign", "rsa-no-N", RuleKeyAlgorithm, 0, ""},
		{"staff-sign", "rsa-by-value", RuleKeyAlgorithm, 0, ""},
		{"staff-sign", "lookalike", RuleKeyCurve, 0, ""},
		{"staff-sign", "nil-curve", RuleKeyAlgorithm, 0, ""},

		// Encryption certificates: per-key-type key usage.
		{"staff-enc", "sm2", "", ke | de | ka, AlgorithmSM2},
		{"staff-enc", "p256", "", ka, AlgorithmECDSA},
		{"staff-enc", "p384", "", ka, AlgorithmECDSA},
		{"staff-enc", "rsa2048", "", ke | de, AlgorithmRSA},
		{"staff-enc", "rsa1024", RuleKeySize, 0, ""},

		// TLS: keyEncipherment for RSA only.
		{"server-tls", "rsa2048", "", ds | ke, AlgorithmRSA},
		{"server-tls", "p256", "", ds, AlgorithmECDSA},
		{"server-tls", "sm2", "", ds, AlgorithmSM2},
		{"server-tls", "p224", RuleKeyCurve, 0, ""},

		// Seals are SM2 only.
		{"seal-signer", "sm2", "", ds | nr, AlgorithmSM2},
		{"seal-signer", "p256", RuleKeyAlgorithm, 0, ""},
		{"seal-signer", "rsa2048", RuleKeyAlgorithm, 0, ""},
		{"seal-maker", "sm2", "", ds | nr, AlgorithmSM2},
		{"seal-maker", "p384", RuleKeyAlgorithm, 0, ""},
		{"seal-maker", "rsa3072", RuleKeyAlgorithm, 0, ""},

		{"ocsp-signer", "sm2", "", ds, AlgorithmSM2},
		{"ocsp-signer", "p384", "", ds, AlgorithmECDSA},
		{"ocsp-signer", "rsa3072", "", ds, AlgorithmRSA},
		{"ocsp-signer", "rsa1024", RuleKeySize, 0, ""},
	}
	set := defaultSet(t)
	for _, tt := range tests {
		t.Run(tt.profile+"/"+tt.key, func(t *testing.T) {
			p, err := set.Get(tt.profile)
			if err != nil {
				t.Fatal(err)
			}
			req := validRequest(t, tt.profile, keys[tt.key])
			d, err := p.Check(req)
			wantRule(t, err, tt.rule)
			if tt.rule != "" {
				return
			}
			if d.KeyUsage != tt.wantKU || d.KeyAlgorithm != tt.wantAlg {
				t.Errorf("KeyUsage %b alg %q, want %b %q", d.KeyUsage, d.KeyAlgorithm, tt.wantKU, tt.wantAlg)
			}
		})
	}
}

// validRequest returns a request profile accepts apart from its key.
func validRequest(t *testing.T, profile string, key crypto.PublicKey) Request {
	t.Helper()
	req := Request{PublicKey: key, Department: "czt", RequesterDepartment: "czt"}
	switch profile {
	case "server-tls":
		req = withSubject(t, req, at{typ: "CN", value: "www.czt.example.gov.cn"})
		req.DNSNames = []string{"www.czt.example.gov.cn"}
	case "seal-signer", "seal-maker":
		req = withSubject(t, req, at{typ: "CN", value: "某省财政厅"}, at{typ: "O", value: "某省财政厅"})
	default:
		req = withSubject(t, req, at{typ: "CN", value: "张三"}, at{typ: "OU", value: "省财政厅"})
	}
	return req
}

func TestCheckDecision(t *testing.T) {
	tests := []struct {
		profile string
		eku     []x509.ExtKeyUsage
		oids    []asn1.ObjectIdentifier
		nocheck bool
	}{
		{"staff-sign", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}, []asn1.ObjectIdentifier{OIDExtKeyUsageClientAuth, OIDExtKeyUsageEmailProtection}, false},
		{"staff-enc", nil, nil, false},
		{"server-tls", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []asn1.ObjectIdentifier{OIDExtKeyUsageServerAuth}, false},
		{"seal-signer", nil, nil, false},
		{"seal-maker", nil, nil, false},
		{"ocsp-signer", []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, []asn1.ObjectIdentifier{OIDExtKeyUsageOCSPSigning}, true},
	}
	key := sm2Key(t)
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			p := profile(t, tt.profile)
			d, err := p.Check(validRequest(t, tt.profile, key))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.ExtKeyUsage, tt.eku) || !slices.EqualFunc(d.ExtKeyUsageOIDs, tt.oids, asn1.ObjectIdentifier.Equal) {
				t.Errorf("EKU %v %v, want %v %v", d.ExtKeyUsage, d.ExtKeyUsageOIDs, tt.eku, tt.oids)
			}
			if d.OCSPNoCheck != tt.nocheck {
				t.Errorf("OCSPNoCheck = %v", d.OCSPNoCheck)
			}
			if d.Validity != time.Duration(p.DefaultValidity) {
				t.Errorf("Validity = %v, want default %v", d.Validity, p.DefaultValidity)
			}
		})
	}
}

func TestCheckSubject(t *testing.T) {
	cn := func(v string) at { return at{typ: "CN", value: v} }
	ou := at{typ: "OU", value: "省财政厅"}
	tests := []struct {
		name    string
		profile string // staff-sign if empty
		attrs   []at
		rule    string
		// encoding marks rules about the ASN.1 string type, which only
		// RawSubject shows; the Names-only rerun accepts those.
		encoding bool
	}{
		{name: "chinese names", attrs: []at{cn("张三"), ou}},
		{name: "full openssl-style subject", attrs: []at{{typ: "C", value: "CN"}, {typ: "ST", value: "某省"}, {typ: "L", value: "某市"}, {typ: "O", value: "某省人民政府"}, ou, cn("张三"), {typ: "emailAddress", value: "zhangsan@czt.example.gov.cn"}, {typ: "serialNumber", value: "GA-0012345"}}},
		{name: "several OUs", attrs: []at{cn("张三"), ou, {typ: "OU", value: "预算处"}}},
		{name: "ASCII CN as PrintableString", attrs: []at{cn("Zhang San")}},
		{name: "CN 64 Chinese characters", attrs: []at{cn(strings.Repeat("张", 64))}},
		{name: "L 128 characters", attrs: []at{cn("张三"), {typ: "L", value: strings.Repeat("市", 128)}}},

		{name: "CN missing", attrs: []at{ou}, rule: RuleSubjectRequired},
		{name: "empty subject", attrs: nil, rule: RuleSubjectRequired},
		{name: "seal O missing", profile: "seal-signer", attrs: []at{cn("某省财政厅")}, rule: RuleSubjectRequired},
		{name: "attribute not allowed", attrs: []at{cn("张三"), {typ: "title", value: "处长"}}, rule: RuleSubjectAttribute},
		{name: "unknown attribute OID", attrs: []at{cn("张三"), {typ: "2.5.4.13", value: "description"}}, rule: RuleSubjectAttribute},
		{name: "private OID", attrs: []at{cn("张三"), {typ: "1.2.156.99.1", value: "x"}}, rule: RuleSubjectAttribute},
		{name: "email in seal subject", profile: "seal-signer", attrs: []at{cn("某省财政厅"), {typ: "O", value: "某省财政厅"}, {typ: "emailAddress", value: "a@b.cn"}}, rule: RuleSubjectAttribute},

		{name: "empty CN", attrs: []at{cn("")}, rule: RuleSubjectValue},
		{name: "blank CN", attrs: []at{cn("   ")}, rule: RuleSubjectValue},
		{name: "trailing space", attrs: []at{cn("张三 ")}, rule: RuleSubjectValue},
		{name: "NUL", attrs: []at{cn("张三\x00.example")}, rule: RuleSubjectValue},
		{name: "control character", attrs: []at{cn("张\x07三")}, rule: RuleSubjectValue},
		{name: "C1 control character", attrs: []at{cn("张\u0085三")}, rule: RuleSubjectValue},
		{name: "bidi override", attrs: []at{cn("张三\u202Efdp.exe")}, rule: RuleSubjectValue},
		{name: "invalid UTF-8", attrs: []at{{typ: "CN", value: "\xe5\xbc", tag: tagUTF8String}}, rule: RuleSubjectValue},
		{name: "CN 65 characters", attrs: []at{cn(strings.Repeat("张", 65))}, rule: RuleSubjectValue},
		{name: "OU 65 characters", attrs: []at{cn("张三"), {typ: "OU", value: strings.Repeat("a", 65)}}, rule: RuleSubjectValue},
		{name: "L 129 characters", attrs: []at{cn("张三"), {typ: "L", value: strings.Repeat("市", 129)}}, rule: RuleSubjectValue},
		{name: "C lower case", attrs: []at{cn("张三"), {typ: "C", value: "cn"}}, rule: RuleSubjectValue},
		{name: "C three letters", attrs: []at{cn("张三"), {typ: "C", value: "CHN"}}, rule: RuleSubjectValue},
		{name: "C digits", attrs: []at{cn("张三"), {typ: "C", value: "86"}}, rule: RuleSubjectValue},
		{name: "C as UTF8String", attrs: []at{cn("张三"), {typ: "C", value: "CN", tag: tagUTF8String}}, rule: RuleSubjectValue, encoding: true},
		{name: "CN as BMPString", attrs: []at{{typ: "CN", value: "\x5f\x20\x4e\x09", tag: tagBMPString}}, rule: RuleSubjectValue, encoding: true},
		{name: "CN as TeletexString", attrs: []at{{typ: "CN", value: "abc", tag: tagT61String}}, rule: RuleSubjectValue, encoding: true},
		{name: "PrintableString with @", attrs: []at{{typ: "CN", value: "a@b", tag: tagPrintableString}}, rule: RuleSubjectValue},
		{name: "serialNumber not printable", attrs: []at{cn("张三"), {typ: "serialNumber", value: "张三"}}, rule: RuleSubjectValue},
		{name: "serialNumber too long", attrs: []at{cn("张三"), {typ: "serialNumber", value: strings.Repeat("1", 65)}}, rule: RuleSubjectValue},
		{name: "emailAddress as UTF8String", attrs: []at{cn("张三"), {typ: "emailAddress", value: "a@b.cn", tag: tagUTF8String}}, rule: RuleSubjectValue, encoding: true},
		{name: "emailAddress malformed", attrs: []at{cn("张三"), {typ: "emailAddress", value: "a@@b.cn"}}, rule: RuleSubjectValue},
		{name: "emailAddress not ASCII", attrs: []at{cn("张三"), {typ: "emailAddress", value: "张三@b.cn"}}, rule: RuleSubjectValue},
	}
	key := sm2Key(t)
	set := defaultSet(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.profile
			if name == "" {
				name = "staff-sign"
			}
			p, _ := set.Get(name)
			req := withSubject(t, Request{PublicKey: key}, tt.attrs...)
			_, err := p.Check(req)
			wantRule(t, err, tt.rule)
			if _, ok := tryParseName(req.RawSubject); ok {
				// The same subject without RawSubject (Names only) must
				// give the same answer.
				req.RawSubject = nil
				_, err = p.Check(req)
				if tt.encoding {
					wantRule(t, err, "")
				} else {
					wantRule(t, err, tt.rule)
				}
			}
		})
	}
}

// TestSubjectSources checks which representation of the subject is
// validated and that the representations must agree.
func TestSubjectSources(t *testing.T) {
	p := profile(t, "staff-sign")
	key := sm2Key(t)
	good := withSubject(t, Request{PublicKey: key}, at{typ: "CN", value: "张三"}, at{typ: "OU", value: "省财政厅"})

	tests := []struct {
		name string
		req  func() Request
		rule string
	}{
		{"raw and names", func() Request { return good }, ""},
		{"raw only", func() Request { r := good; r.Subject = pkix.Name{}; return r }, ""},
		{"names only", func() Request { r := good; r.RawSubject = nil; return r }, ""},
		{"fields only", func() Request {
			return Request{PublicKey: key, Subject: pkix.Name{CommonName: "张三", OrganizationalUnit: []string{"省财政厅"}}}
		}, ""},
		{"fields only, not allowed", func() Request {
			return Request{PublicKey: key, Subject: pkix.Name{CommonName: "张三", Province: []string{"某省"}, StreetAddress: []string{"x"}}}
		}, RuleSubjectAttribute},
		{"fields only, bad value", func() Request {
			return Request{PublicKey: key, Subject: pkix.Name{CommonName: "张三\x00"}}
		}, RuleSubjectValue},
		{"names with unknown type", func() Request {
			r := good
			r.RawSubject = nil
			r.Subject.Names = append(slices.Clone(r.Subject.Names), pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 13}, Value: "x"})
			return r
		}, RuleSubjectAttribute},
		{"names with non-string value", func() Request {
			r := good
			r.RawSubject = nil
			r.Subject.Names = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: 42}}
			return r
		}, RuleSubjectValue},
		{"CN changed after parsing", func() Request { r := good; r.Subject.CommonName = "李四"; return r }, RuleSubjectEncoding},
		{"CN changed after parsing, no raw", func() Request {
			r := good
			r.RawSubject = nil
			r.Subject.CommonName = "李四"
			return r
		}, RuleSubjectEncoding},
		{"extra name added to fields", func() Request {
			r := good
			r.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 12}, Value: "处长"}}
			return r
		}, RuleSubjectEncoding},
		{"raw and names disagree", func() Request {
			r := good
			r.Subject = parseName(t, rawName(t, at{typ: "CN", value: "张三"}))
			return r
		}, RuleSubjectEncoding},
		{"raw not DER", func() Request { r := good; r.RawSubject = []byte{0x30, 0x05, 0x31}; return r }, RuleSubjectEncoding},
		{"raw trailing data", func() Request { r := good; r.RawSubject = append(slices.Clone(good.RawSubject), 0); return r }, RuleSubjectEncoding},
		{"raw empty RDN", func() Request {
			r := good
			r.Subject = pkix.Name{}
			r.RawSubject = []byte{0x30, 0x02, 0x31, 0x00}
			return r
		}, RuleSubjectEncoding},
		{"raw attribute without value", func() Request {
			r := good
			r.Subject = pkix.Name{}
			r.RawSubject = []byte{0x30, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x03, 0x55, 0x04, 0x03}
			return r
		}, RuleSubjectEncoding},
		{"raw multi-valued RDN", func() Request {
			r := good
			r.Subject = pkix.Name{}
			// SET { CN=a, OU=b } in one RDN: accepted, both attributes checked.
			r.RawSubject = []byte{0x30, 0x16, 0x31, 0x14,
				0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x01, 'a',
				0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x0b, 0x13, 0x01, 'b'}
			return r
		}, ""},
		{"raw multi-valued RDN with bad value", func() Request {
			r := good
			r.Subject = pkix.Name{}
			r.RawSubject = []byte{0x30, 0x16, 0x31, 0x14,
				0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x01, 'a',
				0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x0b, 0x13, 0x01, '@'}
			return r
		}, RuleSubjectValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Check(tt.req())
			wantRule(t, err, tt.rule)
		})
	}
}

func TestCheckSANs(t *testing.T) {
	set := defaultSet(t)
	wild, _ := set.Get("server-tls")
	wild.SANs.AllowWildcard = true
	uris, _ := set.Get("server-tls")
	uris.SANs.Allowed = append(uris.SANs.Allowed, SANURI)
	uris.Subject.CommonNameInSANs = false
	profiles := map[string]*Profile{"wildcard": wild, "uri": uris}

	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dns := func(names ...string) Request { return Request{DNSNames: names} }
	ips := func(list ...net.IP) Request { return Request{IPAddresses: list} }
	emails := func(list ...string) Request { return Request{EmailAddresses: list} }
	long := strings.Repeat("a", 63)

	tests := []struct {
		name    string
		profile string // server-tls if empty
		req     Request
		cn      string // subject CN, none if empty
		rule    string
	}{
		{name: "dns", req: dns("www.czt.example.gov.cn")},
		{name: "dns upper case", req: dns("WWW.Example.GOV.CN")},
		{name: "single label", req: dns("intranet")},
		{name: "A-labels", req: dns("xn--fiqs8s.xn--55qx5d.cn")},
		{name: "A-label of lower-case U-label", req: dns("xn--tda.cn")},
		{name: "253 characters", req: dns(long + "." + long + "." + long + "." + strings.Repeat("b", 61))},
		{name: "ipv4", req: ips(net.ParseIP("10.1.2.3"))},
		{name: "ipv4 4-byte form", req: ips(net.IPv4(10, 1, 2, 3).To4())},
		{name: "ipv6", req: ips(net.ParseIP("2001:db8::1"))},
		{name: "dns and ip", req: Request{DNSNames: []string{"a.example.cn"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}},
		{name: "100 SANs", req: dns(slices.Repeat([]string{"a.example.cn"}, 100)...)},

		{name: "none", req: Request{}, rule: RuleSANRequired},
		{name: "101 SANs", req: dns(slices.Repeat([]string{"a.example.cn"}, 101)...), rule: RuleSANCount},
		{name: "email not allowed", req: Request{DNSNames: []string{"a.example.cn"}, EmailAddresses: []string{"a@example.cn"}}, rule: RuleSANType},
		{name: "uri not allowed", req: Request{DNSNames: []string{"a.example.cn"}, URIs: []*url.URL{u("https://a.example.cn/")}}, rule: RuleSANType},
		{name: "empty dns", req: dns(""), rule: RuleSANValue},
		{name: "trailing dot", req: dns("www.example.cn."), rule: RuleSANValue},
		{name: "empty label", req: dns("www..example.cn"), rule: RuleSANValue},
		{name: "leading dot", req: dns(".example.cn"), rule: RuleSANValue},
		{name: "254 characters", req: dns(long + "." + long + "." + long + "." + strings.Repeat("b", 62)), rule: RuleSANValue},
		{name: "64-character label", req: dns(long + "a.example.cn"), rule: RuleSANValue},
		{name: "underscore", req: dns("a_b.example.cn"), rule: RuleSANValue},
		{name: "leading hyphen", req: dns("-a.example.cn"), rule: RuleSANValue},
		{name: "trailing hyphen", req: dns("a-.example.cn"), rule: RuleSANValue},
		{name: "space", req: dns("a b.example.cn"), rule: RuleSANValue},
		{name: "U-label", req: dns("中国.cn"), rule: RuleSANValue},
		{name: "bad A-label", req: dns("xn--zz.cn"), rule: RuleSANValue},
		{name: "A-label of disallowed rune", req: dns("xn--a-ecp.cn"), rule: RuleSANValue},
		{name: "A-label of upper-case U-label", req: dns("xn--wca.cn"), rule: RuleSANValue},
		{name: "A-label of ASCII", req: dns("xn--abc-.cn"), rule: RuleSANValue},
		{name: "A-label not NFC", req: dns("xn--a-xbb.cn"), rule: RuleSANValue},
		{name: "reserved ?? -- label", req: dns("ab--cd.example.cn"), rule: RuleSANValue},
		{name: "IP as dns", req: dns("10.1.2.3"), rule: RuleSANValue},
		{name: "wildcard not allowed", req: dns("*.example.cn"), rule: RuleWildcard},
		{name: "nil IP", req: ips(nil), rule: RuleSANValue},
		{name: "3-byte IP", req: ips(net.IP{1, 2, 3}), rule: RuleSANValue},
		{name: "unspecified v4", req: ips(net.IPv4zero), rule: RuleSANValue},
		{name: "unspecified v6", req: ips(net.IPv6unspecified), rule: RuleSANValue},

		{name: "wildcard allowed", profile: "wildcard", req: dns("*.example.gov.cn")},
		{name: "wildcard upper case", profile: "wildcard", req: dns("*.EXAMPLE.cn")},
		{name: "wildcard over a TLD", profile: "wildcard", req: dns("*.cn"), rule: RuleWildcard},
		{name: "partial wildcard", profile: "wildcard", req: dns("w*.example.cn"), rule: RuleWildcard},
		{name: "wildcard not left-most", profile: "wildcard", req: dns("www.*.example.cn"), rule: RuleWildcard},
		{name: "double wildcard", profile: "wildcard", req: dns("*.*.example.cn"), rule: RuleWildcard},
		{name: "bare wildcard", profile: "wildcard", req: dns("*"), rule: RuleWildcard},

		{name: "uri", profile: "uri", req: Request{URIs: []*url.URL{u("https://www.example.gov.cn:8443/api?x=1")}}},
		{name: "uri ipv6 host", profile: "uri", req: Request{URIs: []*url.URL{u("https://[2001:db8::1]/")}}},
		{name: "uri nil", profile: "uri", req: Request{URIs: []*url.URL{nil}}, rule: RuleSANValue},
		{name: "uri relative", profile: "uri", req: Request{URIs: []*url.URL{u("/api")}}, rule: RuleSANValue},
		{name: "uri without host", profile: "uri", req: Request{URIs: []*url.URL{u("urn:oid:1.2.3")}}, rule: RuleSANValue},
		{name: "uri empty host", profile: "uri", req: Request{URIs: []*url.URL{u("file:///etc/passwd")}}, rule: RuleSANValue},
		{name: "uri user info", profile: "uri", req: Request{URIs: []*url.URL{u("https://admin:pw@example.cn/")}}, rule: RuleSANValue},
		{name: "uri bad host", profile: "uri", req: Request{URIs: []*url.URL{u("https://a_b.example.cn/")}}, rule: RuleSANValue},
		{name: "uri unspecified ip", profile: "uri", req: Request{URIs: []*url.URL{u("https://0.0.0.0/")}}, rule: RuleSANValue},

		{name: "email", profile: "staff-sign", req: emails("zhang.san+ca@czt.example.gov.cn")},
		{name: "no SAN needed", profile: "staff-sign", req: Request{}},
		{name: "5 emails", profile: "staff-sign", req: emails(slices.Repeat([]string{"a@b.cn"}, 5)...)},
		{name: "6 emails", profile: "staff-sign", req: emails(slices.Repeat([]string{"a@b.cn"}, 6)...), rule: RuleSANCount},
		{name: "dns in staff-sign", profile: "staff-sign", req: dns("a.example.cn"), rule: RuleSANType},
		{name: "ip in staff-sign", profile: "staff-sign", req: ips(net.ParseIP("10.0.0.1")), rule: RuleSANType},
		{name: "email two @", profile: "staff-sign", req: emails("a@b@c.cn"), rule: RuleSANValue},
		{name: "email no @", profile: "staff-sign", req: emails("a.b.cn"), rule: RuleSANValue},
		{name: "email empty local", profile: "staff-sign", req: emails("@b.cn"), rule: RuleSANValue},
		{name: "email empty domain", profile: "staff-sign", req: emails("a@"), rule: RuleSANValue},
		{name: "email leading dot", profile: "staff-sign", req: emails(".a@b.cn"), rule: RuleSANValue},
		{name: "email double dot", profile: "staff-sign", req: emails("a..b@c.cn"), rule: RuleSANValue},
		{name: "email quoted", profile: "staff-sign", req: emails(`"a b"@c.cn`), rule: RuleSANValue},
		{name: "email non-ASCII", profile: "staff-sign", req: emails("张三@czt.cn"), rule: RuleSANValue},
		{name: "email bad domain", profile: "staff-sign", req: emails("a@-b.cn"), rule: RuleSANValue},
		{name: "email wildcard domain", profile: "staff-sign", req: emails("a@*.b.cn"), rule: RuleSANValue},
		{name: "email local too long", profile: "staff-sign", req: emails(strings.Repeat("a", 65) + "@b.cn"), rule: RuleSANValue},
		{name: "seal has no SANs", profile: "seal-signer", req: emails("a@b.cn"), rule: RuleSANType},

		// CN must repeat a SAN in server-tls.
		{name: "CN equals SAN", req: dns("www.example.cn"), cn: "www.example.cn"},
		{name: "CN equals SAN ignoring case", req: dns("WWW.example.cn"), cn: "www.EXAMPLE.cn"},
		{name: "CN equals IP SAN", req: Request{DNSNames: []string{"a.example.cn"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1").To4()}}, cn: "10.0.0.1"},
		{name: "CN not a SAN", req: dns("www.example.cn"), cn: "mail.example.cn", rule: RuleCommonName},
		{name: "CN IP not a SAN", req: dns("10-0-0-1.example.cn"), cn: "10.0.0.1", rule: RuleCommonName},
		{name: "CN chinese", req: dns("www.example.cn"), cn: "财政厅门户", rule: RuleCommonName},
	}
	key := sm2Key(t) // accepted by every profile
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := profiles[tt.profile]
			if p == nil {
				name := tt.profile
				if name == "" {
					name = "server-tls"
				}
				p, _ = set.Get(name)
			}
			req := tt.req
			req.PublicKey = key
			switch {
			case tt.cn != "":
				req = withSubject(t, req, at{typ: "CN", value: tt.cn})
			case p.Name == "seal-signer":
				req = withSubject(t, req, at{typ: "CN", value: "某省财政厅"}, at{typ: "O", value: "某省财政厅"})
			case len(p.Subject.Required) > 0:
				req = withSubject(t, req, at{typ: "CN", value: "张三"})
			}
			_, err := p.Check(req)
			wantRule(t, err, tt.rule)
		})
	}
}

func TestCheckDepartment(t *testing.T) {
	key := sm2Key(t)
	tests := []struct {
		profile   string
		dept      string
		requester string
		rule      string
	}{
		{"staff-sign", "czt", "czt", ""},
		{"staff-sign", "czt", "", ""}, // administrator
		{"staff-sign", "czt", "gat", RuleDepartment},
		{"staff-sign", "", "gat", RuleDepartment},
		{"staff-sign", "CZT", "czt", RuleDepartment},
		{"staff-enc", "czt", "gat", RuleDepartment},
		{"seal-signer", "czt", "gat", RuleDepartment},
		{"server-tls", "czt", "gat", ""},
		{"seal-maker", "czt", "gat", ""},
		{"ocsp-signer", "czt", "gat", ""},
	}
	set := defaultSet(t)
	for _, tt := range tests {
		p, _ := set.Get(tt.profile)
		req := validRequest(t, tt.profile, key)
		req.Department, req.RequesterDepartment = tt.dept, tt.requester
		_, err := p.Check(req)
		t.Run(tt.profile+"/"+tt.dept+"/"+tt.requester, func(t *testing.T) { wantRule(t, err, tt.rule) })
	}
}

func TestCheckValidity(t *testing.T) {
	key := sm2Key(t)
	tests := []struct {
		profile   string
		requested time.Duration
		want      time.Duration
		rule      string
	}{
		{"staff-sign", 0, 365 * day, ""},
		{"staff-sign", 30 * day, 30 * day, ""},
		{"staff-sign", 731 * day, 731 * day, ""},
		{"staff-sign", 731*day + time.Second, 0, RuleValidity},
		{"staff-sign", 3 * 365 * day, 0, RuleValidity},
		{"staff-sign", -time.Hour, 0, RuleValidity},
		{"server-tls", 0, 365 * day, ""},
		{"server-tls", 398 * day, 398 * day, ""},
		{"server-tls", 399 * day, 0, RuleValidity},
		{"seal-signer", 5 * 365 * day, 5 * 365 * day, ""},
		{"seal-signer", 6 * 365 * day, 0, RuleValidity},
		{"ocsp-signer", 0, 7 * day, ""},
		{"ocsp-signer", 30 * day, 30 * day, ""},
		{"ocsp-signer", 31 * day, 0, RuleValidity},
	}
	set := defaultSet(t)
	for _, tt := range tests {
		p, _ := set.Get(tt.profile)
		req := validRequest(t, tt.profile, key)
		req.Validity = tt.requested
		d, err := p.Check(req)
		t.Run(tt.profile+"/"+tt.requested.String(), func(t *testing.T) {
			wantRule(t, err, tt.rule)
			if d.Validity != tt.want {
				t.Errorf("Validity = %v, want %v", d.Validity, tt.want)
			}
		})
	}
}

func TestViolationError(t *testing.T) {
	p := profile(t, "seal-signer")
	_, err := p.Check(validRequest(t, "seal-signer", ecKey(t, elliptic.P256())))
	var v *Violation
	if !errors.As(err, &v) {
		t.Fatalf("error %v", err)
	}
	if v.Profile != "seal-signer" || v.Rule != RuleKeyAlgorithm || !strings.Contains(v.Detail, "ecdsa") {
		t.Fatalf("violation %+v", v)
	}
	if got := err.Error(); !strings.Contains(got, `profile "seal-signer"`) || !strings.Contains(got, RuleKeyAlgorithm) {
		t.Fatalf("Error() = %q", got)
	}
	if errors.Is(err, ErrInvalidProfile) {
		t.Fatal("a violation matches ErrInvalidProfile")
	}
}

func TestCheckInvalidProfile(t *testing.T) {
	p := profile(t, "staff-sign")
	p.KeyUsage = append(p.KeyUsage, "keyCertSign")
	_, err := p.Check(validRequest(t, "staff-sign", sm2Key(t)))
	if !errors.Is(err, ErrInvalidProfile) || errors.Is(err, ErrPolicy) {
		t.Fatalf("error = %v", err)
	}
	if _, err := (&Profile{}).Check(Request{}); !errors.Is(err, ErrInvalidProfile) {
		t.Fatalf("zero Profile: error = %v", err)
	}
}

// TestCheckOpenSSLCSR runs a CSR made by OpenSSL 3.0 (SM2, UTF-8 Chinese
// subject, IA5String emailAddress; see testdata/README.md) through the
// path the CA takes: smx509 parse, signature check, RequestFromCSR, Check.
func TestCheckOpenSSLCSR(t *testing.T) {
	der, err := os.ReadFile("testdata/staff-sm2-openssl.csr")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := smx509.ParseCertificateRequestPEM(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	req := RequestFromCSR(csr)
	req.Department, req.RequesterDepartment = "czt", "czt"

	set := defaultSet(t)
	p, _ := set.Get("staff-sign")
	d, err := p.Check(req)
	if err != nil {
		t.Fatal(err)
	}
	if d.KeyAlgorithm != AlgorithmSM2 || d.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment {
		t.Fatalf("decision %+v", d)
	}
	if len(req.EmailAddresses) != 1 || req.Subject.CommonName != "张三" || len(req.RawSubject) == 0 {
		t.Fatalf("RequestFromCSR lost data: %+v", req)
	}

	for name, rule := range map[string]string{
		"seal-signer": RuleSubjectAttribute, // emailAddress is not allowed
		"server-tls":  RuleSubjectAttribute, // emailAddress is not allowed
		"ocsp-signer": RuleSubjectAttribute, // ST is not allowed
	} {
		p, _ := set.Get(name)
		_, err := p.Check(req)
		t.Run(name, func(t *testing.T) { wantRule(t, err, rule) })
	}

	// The CSR may not be modified after parsing without Check noticing.
	mod := RequestFromCSR(csr)
	mod.Subject.CommonName = "李四"
	_, err = p.Check(mod)
	wantRule(t, err, RuleSubjectEncoding)

	if got := RequestFromCSR(nil); got.PublicKey != nil || got.RawSubject != nil {
		t.Fatalf("RequestFromCSR(nil) = %+v", got)
	}
}

func BenchmarkCheck(b *testing.B) {
	p := profile(b, "staff-sign")
	req := Request{
		PublicKey:      sm2Key(b),
		Subject:        pkix.Name{CommonName: "张三", OrganizationalUnit: []string{"省财政厅"}, Country: []string{"CN"}},
		EmailAddresses: []string{"zhangsan@czt.example.gov.cn"},
	}
	for b.Loop() {
		if _, err := p.Check(req); err != nil {
			b.Fatal(err)
		}
	}
}
