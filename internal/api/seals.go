package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/go-chi/chi/v5"

	"github.com/gmtrust/gmtrust/seal"
)

// Body limits of the seal endpoints.
const (
	// MaxSealBody bounds POST /api/v1/seals: a picture of up to
	// seal.MaxPictureSize, base64-encoded, and a certificate.
	MaxSealBody = 2 << 20
	// MaxStampJSONBody bounds a JSON stamp request, whose document is
	// base64 in the body. Larger documents go as multipart or raw bodies
	// (streamed through SM3) or as a digest.
	MaxStampJSONBody = 4 << 20
	// MaxStampUpload bounds a multipart or raw stamp upload.
	MaxStampUpload = 64 << 20
	// MaxVerifyBody bounds POST /api/v1/signatures/verify: a signature of
	// up to seal.MaxInputSize and a document, both base64.
	MaxVerifyBody = 16 << 20
	// maxFormField bounds each non-file multipart field.
	maxFormField = 8 << 10
)

// SealService is what the seal endpoints need (seal.Service).
type SealService interface {
	Make(ctx context.Context, c seal.Caller, req seal.MakeRequest) (*seal.Made, error)
	Get(ctx context.Context, c seal.Caller, id string) (*seal.Record, error)
	List(ctx context.Context, c seal.Caller, f seal.Filter) ([]seal.Record, string, error)
	Suspend(ctx context.Context, c seal.Caller, id string) (*seal.Record, error)
	Resume(ctx context.Context, c seal.Caller, id string) (*seal.Record, error)
	Revoke(ctx context.Context, c seal.Caller, id, reason string) (*seal.Record, error)
	AddGrant(ctx context.Context, c seal.Caller, id, principal string) (*seal.Grant, error)
	DeleteGrant(ctx context.Context, c seal.Caller, id, principal string) error
	Grants(ctx context.Context, c seal.Caller, id string) ([]seal.Grant, error)
	Stamp(ctx context.Context, c seal.Caller, req seal.StampRequest) (*seal.Stamped, error)
	Stamps(ctx context.Context, c seal.Caller, id, cursor string, limit int) ([]seal.StampRecord, string, error)
	Verify(ctx context.Context, sigDER, data, digest []byte) *seal.Report
}

// MountSeals serves the electronic seal endpoints: seal administration
// and stamping under /api/v1/seals (bearer token), and the public
// POST /api/v1/signatures/verify.
func (s *Server) MountSeals(svc SealService) {
	h := &sealHandlers{s: s, svc: svc}
	r := s.router
	r.Post("/api/v1/signatures/verify", h.verify)
	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)
		r.Post("/api/v1/seals", h.make)
		r.Get("/api/v1/seals", h.list)
		r.Get("/api/v1/seals/{id}", h.get) // also {id}.esl
		r.Get("/api/v1/seals/{id}/picture", h.picture)
		r.Post("/api/v1/seals/{id}/suspend", h.suspend)
		r.Post("/api/v1/seals/{id}/resume", h.resume)
		r.Post("/api/v1/seals/{id}/revoke", h.revoke)
		r.Get("/api/v1/seals/{id}/grants", h.grants)
		r.Post("/api/v1/seals/{id}/grants", h.addGrant)
		r.Delete("/api/v1/seals/{id}/grants/{principal}", h.deleteGrant)
		r.Post("/api/v1/seals/{id}/stamp", h.stamp)
		r.Get("/api/v1/seals/{id}/stamps", h.stamps)
	})
}

type sealHandlers struct {
	s   *Server
	svc SealService
}

func caller(r *http.Request) seal.Caller {
	p := PrincipalFrom(r.Context())
	if p == nil {
		return seal.Caller{}
	}
	return seal.Caller{Name: p.Name, Department: p.Department, Roles: p.Roles}
}

// sealError maps service errors to problems; anything else goes to the
// server's general mapping (CA policy refusals, internal errors).
func (h *sealHandlers) sealError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, seal.ErrPictureTooLarge):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "picture-too-large", err.Error())
	case errors.Is(err, seal.ErrBadPicture):
		writeProblem(w, r, http.StatusUnprocessableEntity, "bad-picture", err.Error())
	case errors.Is(err, seal.ErrBadHolderCert):
		writeProblem(w, r, http.StatusUnprocessableEntity, "bad-holder-certificate", err.Error())
	case errors.Is(err, seal.ErrInvalidRequest):
		writeProblem(w, r, http.StatusBadRequest, "invalid-seal-request", err.Error())
	case errors.Is(err, seal.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, "seal-not-found", err.Error())
	case errors.Is(err, seal.ErrForbidden):
		h.s.forbidden(w, r, err)
	case errors.Is(err, seal.ErrNotUsable):
		writeProblem(w, r, http.StatusConflict, "seal-not-usable", err.Error())
	case errors.Is(err, seal.ErrStateConflict):
		writeProblem(w, r, http.StatusConflict, "seal-state-conflict", err.Error())
	case errors.Is(err, seal.ErrStampRefused):
		writeProblem(w, r, http.StatusConflict, "stamp-refused", err.Error())
	default:
		h.s.writeError(w, r, err)
	}
}

// decodeJSONLimit is decodeJSON with a limit of its own. An empty body
// decodes as {} when allowEmpty.
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64, allowEmpty bool) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("request body exceeds %d bytes", limit))
		case allowEmpty && errors.Is(err, io.EOF):
			return true
		default:
			writeProblem(w, r, http.StatusBadRequest, "bad-json", "request body is not valid JSON for this endpoint: "+err.Error())
		}
		return false
	}
	if dec.More() {
		writeProblem(w, r, http.StatusBadRequest, "bad-json", "trailing data after the JSON body")
		return false
	}
	return true
}

// decodeBase64 accepts standard base64 with or without padding.
func decodeBase64(field, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not valid base64: %v", field, err)
	}
	return b, nil
}

// decodeDigest reads an SM3 digest in hex.
func decodeDigest(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sm3.Size {
		return nil, fmt.Errorf("digest must be the SM3 digest as %d hex digits", 2*sm3.Size)
	}
	return b, nil
}

type pictureJSON struct {
	Type     string `json:"type"`
	Data     string `json:"data"`
	WidthMM  int    `json:"width_mm"`
	HeightMM int    `json:"height_mm"`
}

type makeSealRequest struct {
	Name        string       `json:"name"`
	Type        string       `json:"type"`
	Department  string       `json:"department"`
	Picture     *pictureJSON `json:"picture"`
	ValidDays   int          `json:"valid_days"`
	Certificate string       `json:"certificate,omitempty"`
	KeyRef      string       `json:"key_ref,omitempty"`
	Grants      []string     `json:"grants,omitempty"`
}

type makeSealResponse struct {
	ID          string    `json:"id"`
	ESID        string    `json:"esid"`
	Certificate string    `json:"certificate"`
	Seal        string    `json:"seal"`
	ValidStart  time.Time `json:"valid_start"`
	ValidEnd    time.Time `json:"valid_end"`
}

func (h *sealHandlers) make(w http.ResponseWriter, r *http.Request) {
	var req makeSealRequest
	if !decodeJSONLimit(w, r, &req, MaxSealBody, false) {
		return
	}
	if req.Picture == nil {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "picture is required: {type, data (base64), width_mm, height_mm}")
		return
	}
	pic, err := decodeBase64("picture.data", req.Picture.Data)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "bad-base64", err.Error())
		return
	}
	made, err := h.svc.Make(r.Context(), caller(r), seal.MakeRequest{
		Name: req.Name, Type: req.Type, Department: req.Department, ValidDays: req.ValidDays,
		Picture:     seal.PictureInput{Type: req.Picture.Type, Data: pic, WidthMM: req.Picture.WidthMM, HeightMM: req.Picture.HeightMM},
		Certificate: []byte(req.Certificate), KeyRef: req.KeyRef, Grants: req.Grants,
	})
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	rec := made.Record
	w.Header().Set("Location", "/api/v1/seals/"+rec.ID)
	writeJSON(w, http.StatusCreated, makeSealResponse{
		ID: rec.ID, ESID: rec.ESID, Certificate: pemCert(made.HolderCert), Seal: base64.StdEncoding.EncodeToString(rec.DER),
		ValidStart: rec.ValidStart.UTC(), ValidEnd: rec.ValidEnd.UTC(),
	})
}

// SealJSON is the API view of a seal.
type SealJSON struct {
	ID                      string      `json:"id"`
	ESID                    string      `json:"esid"`
	Name                    string      `json:"name"`
	Type                    string      `json:"type"`
	TypeCode                int         `json:"type_code"`
	Department              string      `json:"department"`
	Status                  string      `json:"status"`
	RevocationReason        string      `json:"revocation_reason,omitempty"`
	ValidStart              time.Time   `json:"valid_start"`
	ValidEnd                time.Time   `json:"valid_end"`
	HolderCA                string      `json:"holder_ca"`
	HolderCertificateSerial string      `json:"holder_certificate_serial"`
	Maker                   string      `json:"maker"`
	MakerSubject            string      `json:"maker_subject,omitempty"`
	Picture                 PictureInfo `json:"picture"`
	CreatedBy               string      `json:"created_by"`
	CreatedAt               time.Time   `json:"created_at"`
	StatusChangedAt         *time.Time  `json:"status_changed_at,omitempty"`
	StatusChangedBy         string      `json:"status_changed_by,omitempty"`
}

// PictureInfo describes a seal picture without its bytes.
type PictureInfo struct {
	Type     string `json:"type"`
	WidthMM  int    `json:"width_mm"`
	HeightMM int    `json:"height_mm"`
	Size     int    `json:"size,omitempty"`
}

// SealToJSON converts a seal record to its API view.
func SealToJSON(rec *seal.Record) SealJSON {
	j := SealJSON{
		ID: rec.ID, ESID: rec.ESID, Name: rec.Name, Type: seal.TypeName(rec.Type), TypeCode: rec.Type, Department: rec.Department,
		Status: rec.Status.String(), RevocationReason: rec.RevocationReason, ValidStart: rec.ValidStart.UTC(), ValidEnd: rec.ValidEnd.UTC(),
		HolderCA: rec.HolderCAID, HolderCertificateSerial: rec.HolderSerial, Maker: rec.MakerSignerID,
		Picture:   PictureInfo{Type: rec.PictureType, WidthMM: rec.WidthMM, HeightMM: rec.HeightMM, Size: len(rec.Picture)},
		CreatedBy: rec.CreatedBy, CreatedAt: rec.CreatedAt.UTC(), StatusChangedBy: rec.StatusChangedBy,
	}
	if !rec.StatusChangedAt.IsZero() {
		t := rec.StatusChangedAt.UTC()
		j.StatusChangedAt = &t
	}
	if len(rec.DER) > 0 {
		if sum, err := seal.Inspect(rec.DER); err == nil {
			j.MakerSubject = sum.Maker.Subject
		}
	}
	return j
}

func (h *sealHandlers) get(w http.ResponseWriter, r *http.Request) {
	id, esl := strings.CutSuffix(chi.URLParam(r, "id"), ".esl")
	rec, err := h.svc.Get(r.Context(), caller(r), id)
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	if esl {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+rec.ESID+`.esl"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(rec.DER)
		return
	}
	writeJSON(w, http.StatusOK, SealToJSON(rec))
}

// pictureContentType maps a seal picture type to its media type.
func pictureContentType(typ string) string {
	switch strings.ToLower(typ) {
	case "png":
		return "image/png"
	case "jpg", "jpeg":
		return "image/jpeg"
	case "gif":
		return "image/gif"
	case "svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}

func (h *sealHandlers) picture(w http.ResponseWriter, r *http.Request) {
	rec, err := h.svc.Get(r.Context(), caller(r), chi.URLParam(r, "id"))
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	ct := pictureContentType(rec.PictureType)
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ct == "image/svg+xml" {
		// An SVG is a document that can carry scripts and links: opened
		// directly it must not run or load anything.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	}
	w.Header().Set("Cache-Control", "private, max-age=3600")
	_, _ = w.Write(rec.Picture)
}

func (h *sealHandlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := seal.Filter{Department: q.Get("department"), Cursor: q.Get("cursor")}
	if st := q.Get("status"); st != "" {
		s, err := seal.ParseSealState(st)
		if err != nil {
			writeProblem(w, r, http.StatusBadRequest, "bad-filter", "status must be active, suspended or revoked")
			return
		}
		f.Status = s
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			writeProblem(w, r, http.StatusBadRequest, "bad-filter", "limit must be between 1 and 500")
			return
		}
		f.Limit = n
	}
	recs, next, err := h.svc.List(r.Context(), caller(r), f)
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	out := struct {
		Items      []SealJSON `json:"items"`
		NextCursor string     `json:"next_cursor,omitempty"`
	}{Items: make([]SealJSON, 0, len(recs)), NextCursor: next}
	for i := range recs {
		out.Items = append(out.Items, SealToJSON(&recs[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *sealHandlers) suspend(w http.ResponseWriter, r *http.Request) {
	h.statusChange(w, r, h.svc.Suspend)
}

func (h *sealHandlers) resume(w http.ResponseWriter, r *http.Request) {
	h.statusChange(w, r, h.svc.Resume)
}

func (h *sealHandlers) statusChange(w http.ResponseWriter, r *http.Request, fn func(context.Context, seal.Caller, string) (*seal.Record, error)) {
	var empty struct{}
	if !decodeJSONLimit(w, r, &empty, MaxBodySize, true) {
		return
	}
	rec, err := fn(r.Context(), caller(r), chi.URLParam(r, "id"))
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SealToJSON(rec))
}

func (h *sealHandlers) revoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	if !decodeJSONLimit(w, r, &req, MaxBodySize, true) {
		return
	}
	rec, err := h.svc.Revoke(r.Context(), caller(r), chi.URLParam(r, "id"), req.Reason)
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SealToJSON(rec))
}

// GrantJSON is a seal grant as the API (and the CLI's --json) shows it.
type GrantJSON struct {
	SealID    string    `json:"seal_id"`
	Principal string    `json:"principal"`
	GrantedBy string    `json:"granted_by"`
	CreatedAt time.Time `json:"created_at"`
}

// ToGrantJSON converts a grant for output.
func ToGrantJSON(g seal.Grant) GrantJSON {
	return GrantJSON{SealID: g.SealID, Principal: g.Principal, GrantedBy: g.GrantedBy, CreatedAt: g.CreatedAt.UTC()}
}

func (h *sealHandlers) grants(w http.ResponseWriter, r *http.Request) {
	gs, err := h.svc.Grants(r.Context(), caller(r), chi.URLParam(r, "id"))
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	out := struct {
		Items []GrantJSON `json:"items"`
	}{Items: make([]GrantJSON, 0, len(gs))}
	for _, g := range gs {
		out.Items = append(out.Items, ToGrantJSON(g))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *sealHandlers) addGrant(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Principal string `json:"principal"`
	}
	if !decodeJSONLimit(w, r, &req, MaxBodySize, false) {
		return
	}
	g, err := h.svc.AddGrant(r.Context(), caller(r), chi.URLParam(r, "id"), req.Principal)
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ToGrantJSON(*g))
}

func (h *sealHandlers) deleteGrant(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.DeleteGrant(r.Context(), caller(r), chi.URLParam(r, "id"), chi.URLParam(r, "principal")); err != nil {
		h.sealError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stampFields are the non-document fields of a stamp request.
type stampFields struct {
	Data         *string `json:"data,omitempty"`
	Digest       *string `json:"digest,omitempty"`
	PropertyInfo string  `json:"property_info"`
	ApprovalRef  string  `json:"approval_ref"`
}

type stampResponse struct {
	ID        string    `json:"id"`
	SealID    string    `json:"seal_id"`
	ESID      string    `json:"esid"`
	Signature string    `json:"signature"`
	Time      time.Time `json:"time"`
	DataHash  string    `json:"data_hash"`
}

// stamp signs a document with a seal. The document comes as base64 in a
// JSON body ("data"), as its SM3 digest ("digest"), as the "file" part of
// a multipart/form-data body, or as a raw application/octet-stream body
// (property_info and approval_ref then in the query string). Uploads are
// hashed as they stream in and never held in memory whole.
func (h *sealHandlers) stamp(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var f stampFields
	var hash []byte
	var ok bool
	switch mt {
	case "multipart/form-data":
		hash, ok = h.stampMultipart(w, r, &f)
	case "application/octet-stream":
		f.PropertyInfo, f.ApprovalRef = r.URL.Query().Get("property_info"), r.URL.Query().Get("approval_ref")
		hash, ok = hashUpload(w, r, http.MaxBytesReader(w, r.Body, MaxStampUpload))
	default:
		// JSON, whatever the label: like the other JSON endpoints, and
		// what `curl -d` sends.
		hash, ok = h.stampJSON(w, r, &f)
	}
	if !ok {
		return
	}
	st, err := h.svc.Stamp(r.Context(), caller(r), seal.StampRequest{
		SealID: chi.URLParam(r, "id"), DataHash: hash, PropertyInfo: f.PropertyInfo, ApprovalRef: f.ApprovalRef,
	})
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, stampResponse{
		ID: st.Record.ID, SealID: st.Record.SealID, ESID: st.ESID, Signature: base64.StdEncoding.EncodeToString(st.DER),
		Time: st.Record.At.UTC(), DataHash: hex.EncodeToString(st.Record.DataHash),
	})
}

func (h *sealHandlers) stampJSON(w http.ResponseWriter, r *http.Request, f *stampFields) ([]byte, bool) {
	if !decodeJSONLimit(w, r, f, MaxStampJSONBody, false) {
		return nil, false
	}
	switch {
	case (f.Data == nil) == (f.Digest == nil):
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "give exactly one of data (base64 document) and digest (hex SM3)")
		return nil, false
	case f.Data != nil:
		doc, err := decodeBase64("data", *f.Data)
		if err != nil {
			writeProblem(w, r, http.StatusBadRequest, "bad-base64", err.Error())
			return nil, false
		}
		sum := sm3.Sum(doc)
		return sum[:], true
	}
	d, err := decodeDigest(*f.Digest)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "bad-digest", err.Error())
		return nil, false
	}
	return d, true
}

// stampMultipart reads a multipart stamp request: a "file" part, hashed
// as it streams, and the fields property_info, approval_ref (and digest,
// instead of a file), in any order.
func (h *sealHandlers) stampMultipart(w http.ResponseWriter, r *http.Request, f *stampFields) ([]byte, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxStampUpload+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "bad-multipart", err.Error())
		return nil, false
	}
	var hash []byte
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			uploadProblem(w, r, err)
			return nil, false
		}
		name := part.FormName()
		if name == "file" {
			if hash != nil {
				writeProblem(w, r, http.StatusBadRequest, "bad-multipart", "more than one document (file or digest)")
				return nil, false
			}
			if hash, err = hashReader(part); err != nil {
				uploadProblem(w, r, err)
				return nil, false
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, maxFormField+1))
		if err != nil {
			uploadProblem(w, r, err)
			return nil, false
		}
		if len(b) > maxFormField {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("form field %q exceeds %d bytes", name, maxFormField))
			return nil, false
		}
		switch name {
		case "property_info":
			f.PropertyInfo = string(b)
		case "approval_ref":
			f.ApprovalRef = string(b)
		case "digest":
			if hash != nil {
				writeProblem(w, r, http.StatusBadRequest, "bad-multipart", "more than one document (file or digest)")
				return nil, false
			}
			if hash, err = decodeDigest(string(b)); err != nil {
				writeProblem(w, r, http.StatusBadRequest, "bad-digest", err.Error())
				return nil, false
			}
		default:
			writeProblem(w, r, http.StatusBadRequest, "bad-multipart", fmt.Sprintf("unknown form field %q (want file, property_info, approval_ref or digest)", name))
			return nil, false
		}
	}
	if hash == nil {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "a multipart stamp request needs a file part (or a digest field)")
		return nil, false
	}
	return hash, true
}

func hashReader(rd io.Reader) ([]byte, error) {
	hh := sm3.New()
	if _, err := io.Copy(hh, rd); err != nil {
		return nil, err
	}
	return hh.Sum(nil), nil
}

func hashUpload(w http.ResponseWriter, r *http.Request, body io.Reader) ([]byte, bool) {
	hash, err := hashReader(body)
	if err != nil {
		uploadProblem(w, r, err)
		return nil, false
	}
	return hash, true
}

func uploadProblem(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("upload exceeds %d bytes (%d MiB documents at most)", mbe.Limit, MaxStampUpload>>20))
		return
	}
	writeProblem(w, r, http.StatusBadRequest, "bad-multipart", "reading the upload: "+err.Error())
}

type stampJSON struct {
	ID           string    `json:"id"`
	Principal    string    `json:"principal"`
	Time         time.Time `json:"time"`
	DataHash     string    `json:"data_hash"`
	PropertyInfo string    `json:"property_info"`
	ApprovalRef  string    `json:"approval_ref"`
	// SignatureValue is the signer's DER SEQUENCE{r, s}, base64.
	SignatureValue string    `json:"signature_value"`
	CreatedAt      time.Time `json:"created_at"`
}

func (h *sealHandlers) stamps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			writeProblem(w, r, http.StatusBadRequest, "bad-filter", "limit must be between 1 and 500")
			return
		}
		limit = n
	}
	recs, next, err := h.svc.Stamps(r.Context(), caller(r), chi.URLParam(r, "id"), q.Get("cursor"), limit)
	if err != nil {
		h.sealError(w, r, err)
		return
	}
	out := struct {
		Items      []stampJSON `json:"items"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Items: make([]stampJSON, 0, len(recs)), NextCursor: next}
	for _, s := range recs {
		out.Items = append(out.Items, stampJSON{
			ID: s.ID, Principal: s.Principal, Time: s.At.UTC(), DataHash: hex.EncodeToString(s.DataHash),
			PropertyInfo: s.PropertyInfo, ApprovalRef: s.ApprovalRef,
			SignatureValue: base64.StdEncoding.EncodeToString(s.Signature), CreatedAt: s.CreatedAt.UTC(),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

type verifyRequest struct {
	Signature string  `json:"signature"`
	Data      *string `json:"data,omitempty"`
	Digest    *string `json:"digest,omitempty"`
}

// verify is public: anyone holding a stamped document may check it. The
// answer is 200 with the report whatever the verdict; only requests that
// cannot be read get a problem. The request is JSON, or the DER signature
// itself as application/octet-stream with the document's SM3 digest in
// the query (?digest=HEX): a signature embeds its seal and picture, tens
// of KiB that cost more to scan as a JSON string than to verify.
func (h *sealHandlers) verify(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/octet-stream" {
		h.verifyDER(w, r)
		return
	}
	var req verifyRequest
	if !decodeJSONLimit(w, r, &req, MaxVerifyBody, false) {
		return
	}
	if strings.TrimSpace(req.Signature) == "" {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "signature (base64 DER SES_Signature) is required")
		return
	}
	sig, err := decodeBase64("signature", req.Signature)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "bad-base64", err.Error())
		return
	}
	var data, digest []byte
	if req.Data != nil {
		if data, err = decodeBase64("data", *req.Data); err != nil {
			writeProblem(w, r, http.StatusBadRequest, "bad-base64", err.Error())
			return
		}
		if data == nil {
			data = []byte{} // an empty document is still a document to check
		}
	}
	if req.Digest != nil {
		if digest, err = decodeDigest(*req.Digest); err != nil {
			writeProblem(w, r, http.StatusBadRequest, "bad-digest", err.Error())
			return
		}
	}
	rep := h.svc.Verify(r.Context(), sig, data, digest)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, rep)
}

func (h *sealHandlers) verifyDER(w http.ResponseWriter, r *http.Request) {
	sig, err := io.ReadAll(http.MaxBytesReader(w, r.Body, seal.MaxInputSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("a seal signature is at most %d bytes", seal.MaxInputSize))
			return
		}
		writeProblem(w, r, http.StatusBadRequest, "bad-body", "reading the signature: "+err.Error())
		return
	}
	if len(sig) == 0 {
		writeProblem(w, r, http.StatusBadRequest, "missing-field", "the body must be the DER SES_Signature")
		return
	}
	var digest []byte
	if d := r.URL.Query().Get("digest"); d != "" {
		if digest, err = decodeDigest(d); err != nil {
			writeProblem(w, r, http.StatusBadRequest, "bad-digest", err.Error())
			return
		}
	}
	rep := h.svc.Verify(r.Context(), sig, nil, digest)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, rep)
}
