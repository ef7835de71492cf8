// Package e2e holds interoperability and end-to-end tests of the CA core:
// the real gmtrust binary driven over its CLI and HTTP API, its output
// checked by OpenSSL 3 and by an independent SM2 implementation
// (github.com/tjfoc/gmsm). It has no non-test code.
package e2e
