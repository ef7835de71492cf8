package policies

import (
	"slices"

	"github.com/emmansun/gmsm/smx509"
)

// RequestFromCSR fills the parts of a Request that come from a parsed
// CSR (subject, raw subject, key and SANs); the caller adds Department,
// RequesterDepartment and Validity. The CSR's signature must already have
// been checked (csr.CheckSignature). RawSubject, Subject.Names and the SAN
// slices are copied, so changing the Request does not change the CSR.
func RequestFromCSR(csr *smx509.CertificateRequest) Request {
	if csr == nil {
		return Request{}
	}
	subject := csr.Subject
	subject.Names = slices.Clone(csr.Subject.Names)
	return Request{
		Subject:        subject,
		RawSubject:     slices.Clone(csr.RawSubject),
		PublicKey:      csr.PublicKey,
		DNSNames:       slices.Clone(csr.DNSNames),
		IPAddresses:    slices.Clone(csr.IPAddresses),
		EmailAddresses: slices.Clone(csr.EmailAddresses),
		URIs:           slices.Clone(csr.URIs),
	}
}
