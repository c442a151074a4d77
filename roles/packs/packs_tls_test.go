package packs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// certFingerprint is the SHA-256 fingerprint of the PEM certificate in
// file, as openssl prints it (AB:CD:...), computed here independently.
func certFingerprint(t testing.TB, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	sum := sha256.Sum256(block.Bytes)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// TestWebappTLS runs the three tiers with TLS=YES and generated
// certificates: each VM publishes its certificate's fingerprint with the
// onegate command to a fake OneGate, nginx reaches the backends over
// HTTPS verifying their pinned certificates, the backends reach the
// database with sslmode=verify-ca and pg_hba.conf allows TLS only. A
// backend whose certificate does not match what it published is refused,
// and a backend that changed its certificate is avoided by nginx until
// the frontend pins the new one.
func TestWebappTLS(t *testing.T) {
	tt := newThreeTier(t, "t"+strconv.Itoa(os.Getpid()%100000), tierOptions{backends: 2, common: "TLS='YES'\n"})
	tt.applyAll(t)

	seen, msg := tt.backendsSeen(t, "http://"+frontIP+"/", 4)
	if len(seen) != 2 || msg != "hello from the database" {
		t.Fatalf("over TLS: backends %v, message %q", seen, msg)
	}
	// HTTPS at the frontend too (its certificate is self-signed).
	if out, err := get(tt.lab.bridge, "https://"+frontIP+"/", "-k"); err != nil || !strings.HasSuffix(out, "hello from the database") {
		t.Errorf("HTTPS at the frontend: %q %v", out, err)
	}

	// Every VM published the fingerprint of the certificate it serves.
	vms := map[string]*vm{"20": tt.db, "21": tt.backends[0], "22": tt.backends[1], "30": tt.front}
	for id, v := range vms {
		cert := filepath.Join(v.dir, "etc", "tls", "cert.pem")
		if got, want := tt.lab.gate.published(id), certFingerprint(t, cert); got != want {
			t.Errorf("%s published %q, its certificate is %s", v.name, got, want)
		}
		key := filepath.Join(v.dir, "etc", "tls", "key.pem")
		if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", key, err, fi)
		}
	}
	// The backends serve TLS only, and verify with the pinned bundle.
	b1 := tt.backends[0]
	if out, err := get(tt.front.ns, "http://"+b1.ip+":8080/"); err == nil {
		t.Errorf("plain HTTP to a TLS backend answered %q", out)
	}
	bundle := filepath.Join(tt.front.dir, "etc", "tls", "backends.pem")
	if out, err := get(tt.front.ns, "https://webapp-backend:8080/", "--cacert", bundle, "--resolve", "webapp-backend:8080:"+b1.ip); err != nil || !strings.HasPrefix(out, "backend 21") {
		t.Errorf("HTTPS to backend 1 with the frontend's pinned bundle: %q %v", out, err)
	}
	// The database refuses a connection without TLS (hostssl only).
	psql := func(mode string) (string, error) {
		return inNs(b1.ns, "env", "PGPASSFILE="+filepath.Join(b1.dir, "etc", "pgpass"), "PGSSLMODE="+mode,
			"psql", "-X", "-A", "-t", "-w", "-h", dbIP, "-U", "shop_app", "-d", "shop", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
	}
	if out, err := psql("disable"); err == nil || !strings.Contains(out, "no encryption") {
		t.Errorf("psql without TLS from backend 1: %q %v; want refused by pg_hba.conf", out, err)
	}
	if out, err := psql("require"); err != nil || out != "t" {
		t.Errorf("psql with TLS from backend 1: %q %v", out, err)
	}
	env, _ := os.ReadFile(filepath.Join(b1.dir, "etc", "backend.env"))
	if !bytes.Contains(env, []byte("PGSSLMODE=verify-ca\n")) {
		t.Errorf("backend.env:\n%s", env)
	}

	// A second run of every role changes nothing: the certificates stay,
	// the backends keep running, nginx's site file is not rewritten.
	pid := pidFrom(filepath.Join(b1.dir, "state", "backend.pid"))
	site := filepath.Join(tt.front.dir, "nginx", "conf.d", "one-context-webapp.conf")
	before, _ := os.Stat(site)
	fps := map[string]string{}
	for id := range vms {
		fps[id] = tt.lab.gate.published(id)
	}
	tt.applyAll(t)
	if after, _ := os.Stat(site); !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second run rewrote %s", site)
	}
	if p := pidFrom(filepath.Join(b1.dir, "state", "backend.pid")); p != pid || !alive(p) {
		t.Errorf("second run: backend pid %d → %d", pid, p)
	}
	for id, v := range vms {
		if got := certFingerprint(t, filepath.Join(v.dir, "etc", "tls", "cert.pem")); got != fps[id] {
			t.Errorf("second run: %s has a new certificate", v.name)
		}
	}

	// A backend whose certificate is not the one it published is refused.
	good := tt.lab.gate.published("22")
	tt.lab.gate.publish(t, "22", strings.Repeat("00:", 31)+"00")
	if log, err := tt.front.run(t, false); err == nil {
		t.Errorf("frontend trusted a backend with a wrong published fingerprint")
	} else if !strings.Contains(log, "published 00:00:") || !strings.Contains(log, "not trusted") {
		t.Errorf("frontend's refusal does not say why:\n%s", log)
	}
	tt.lab.gate.publish(t, "22", good)
	tt.front.apply(t)

	// Backend 2 makes a new certificate (and publishes it); nginx, still
	// pinned to the old one, refuses it and serves from backend 1 alone.
	b2 := tt.backends[1]
	if err := os.Remove(filepath.Join(b2.dir, "etc", "tls", "cert.pem")); err != nil {
		t.Fatal(err)
	}
	b2.apply(t)
	if tt.lab.gate.published("22") == good {
		t.Fatalf("backend 2 did not publish its new certificate")
	}
	seen, _ = tt.backendsSeen(t, "http://"+frontIP+"/", 4)
	if len(seen) != 1 || seen[backendKey(1)] != 4 {
		t.Errorf("with backend 2's certificate unpinned, requests reached %v; want backend 1 only", seen)
	}
	if log := tailFile(filepath.Join(tt.front.dir, "nginx", "error.log"), 50); !strings.Contains(log, "certificate verify") {
		t.Errorf("nginx's error log does not show the refused certificate:\n%s", log)
	}
	// The frontend's next run pins the new certificate.
	tt.front.apply(t)
	if seen, _ = tt.backendsSeen(t, "http://"+frontIP+"/", 4); len(seen) != 2 {
		t.Errorf("after re-pinning, requests reached %v", seen)
	}

	// Scale up: the new backend pins the database and publishes its own
	// certificate; the database's reconfigure lets it in, the frontend's
	// pins it.
	b3 := tt.addBackend(t)
	b3.apply(t)
	for _, v := range []*vm{tt.db, tt.front} {
		if !v.reconfigure(t) {
			t.Fatalf("%s: reconfigure did not run after the scale", v.name)
		}
	}
	var got map[string]int
	for i := 0; i < 20 && len(got) < 3; i++ {
		got, _ = tt.backendsSeen(t, "http://"+frontIP+"/", 6)
		time.Sleep(100 * time.Millisecond)
	}
	if len(got) != 3 {
		t.Errorf("after the scale over TLS, requests reached %v\nnginx:\n%s", got, grepFile(filepath.Join(tt.front.dir, "nginx", "error.log"), "emerg", "alert", "crit", "error", "signal", "reconfiguring", "start worker", "exit"))
	}
	pinned, _ := os.ReadFile(bundle)
	if n := bytes.Count(pinned, []byte("BEGIN CERTIFICATE")); n != 3 {
		t.Errorf("the frontend pins %d certificates, want 3", n)
	}
}

// serviceCert makes a self-signed certificate for every tier's name, as
// an operator would put in the service's context; PEM certificate and key.
func serviceCert(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "shop service"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames:    []string{"webapp-backend", "webapp-database", "webapp-frontend"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}

// TestWebappTLSFromContext runs the three tiers with TLS=YES and one
// certificate for the service in the context (TLS_CERT_BASE64,
// TLS_KEY_BASE64): every tier serves it and trusts it for its peers, the
// key lands only in 0600 files, and a key that is not the certificate's is
// refused before anything changes.
func TestWebappTLSFromContext(t *testing.T) {
	cert, key := serviceCert(t)
	b64 := base64.StdEncoding.EncodeToString
	tt := newThreeTier(t, "c"+strconv.Itoa(os.Getpid()%100000), tierOptions{backends: 2,
		common: "TLS='YES'\nTLS_CERT_BASE64='" + b64(cert) + "'\nTLS_KEY_BASE64='" + b64(key) + "'\n"})
	tt.applyAll(t)
	seen, msg := tt.backendsSeen(t, "http://"+frontIP+"/", 4)
	if len(seen) != 2 || msg != "hello from the database" {
		t.Fatalf("over TLS with the context's certificate: backends %v, message %q", seen, msg)
	}
	for id, v := range map[string]*vm{"20": tt.db, "21": tt.backends[0], "30": tt.front} {
		got, _ := os.ReadFile(filepath.Join(v.dir, "etc", "tls", "cert.pem"))
		if !bytes.Equal(got, cert) {
			t.Errorf("%s serves another certificate than the context's", v.name)
		}
		if fp, want := tt.lab.gate.published(id), certFingerprint(t, filepath.Join(v.dir, "etc", "tls", "cert.pem")); fp != want {
			t.Errorf("%s published %q, want %s", v.name, fp, want)
		}
	}
	// The private key: only in the tiers' 0600 key files (PostgreSQL's
	// copy is owned by its user).
	keyLine := strings.Split(string(key), "\n")[1]
	_ = filepath.Walk(tt.lab.base, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(keyLine)) {
			if base := filepath.Base(p); base != "key.pem" && base != "one-context-server.key" || fi.Mode().Perm() != 0o600 {
				t.Errorf("the private key is in %s (%v)", p, fi.Mode().Perm())
			}
		}
		return nil
	})

	// Another key for the same certificate is refused, and nothing moves.
	_, other := serviceCert(t)
	b1 := tt.backends[0]
	bad := tt.lab.newVM(t, b1.name, b1.ns, b1.ip, tt.common+"TLS_KEY_BASE64='"+b64(other)+"'\nROLE='backend'\nVMID='21'\n", nil, tt.svc)
	if log, err := bad.run(t, false); err == nil || !strings.Contains(log, "TLS_KEY_BASE64 is not the key of TLS_CERT_BASE64") {
		t.Errorf("a mismatched key: %v\n%s", err, log)
	}
	if got, _ := os.ReadFile(filepath.Join(b1.dir, "etc", "tls", "key.pem")); !bytes.Equal(got, key) {
		t.Errorf("the refused key replaced the good one")
	}
	if left, _ := filepath.Glob(filepath.Join(b1.dir, "etc", "tls", "*.in")); len(left) > 0 {
		t.Errorf("the refused pair left %v", left)
	}
	if seen, _ := tt.backendsSeen(t, "http://"+frontIP+"/", 4); len(seen) != 2 {
		t.Errorf("after the refused key, requests reached %v", seen)
	}
}

// TestPostgreSQLReplicationTLS runs the master and replica roles with
// TLS=YES and generated certificates: the master publishes its
// certificate's fingerprint, the replica pins it and streams over TLS
// (sslmode=verify-ca), and the master accepts replication over TLS only.
func TestPostgreSQLReplicationTLS(t *testing.T) {
	p := newPGPair(t, "TLS='YES'\n")
	p.apply(t)
	if st := p.master.psql(t, "postgres", "SELECT r.state || ' ' || s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid);"); st != "streaming true" && st != "streaming t" {
		t.Errorf("replication over TLS: %q", st)
	}
	gate := p.gate
	if got, want := gate.published("10"), certFingerprint(t, filepath.Join(p.master.dir, "tls", "cert.pem")); got != want {
		t.Errorf("master published %q, its certificate is %s", got, want)
	}
	pinned := filepath.Join(p.replica.conf, "one-context-master.crt")
	if got, want := certFingerprint(t, pinned), gate.published("10"); got != want {
		t.Errorf("replica pinned %s, master published %s", got, want)
	}
	conf, _ := os.ReadFile(filepath.Join(p.replica.conf, "one-context.conf"))
	if !strings.Contains(string(conf), "sslmode=verify-ca sslrootcert="+pinned) {
		t.Errorf("replica's primary_conninfo:\n%s", conf)
	}
	hba, _ := os.ReadFile(filepath.Join(p.master.conf, "pg_hba.conf"))
	if !strings.Contains(string(hba), "hostssl replication replicator 10.99.0.2/32 scram-sha-256") || strings.Contains(string(hba), "\nhost replication") {
		t.Errorf("master pg_hba.conf:\n%s", hba)
	}
	// A second run of both roles keeps the standby streaming.
	p.apply(t)
	if st := p.master.psql(t, "postgres", "SELECT state FROM pg_stat_replication;"); st != "streaming" {
		t.Errorf("after a second run: %q", st)
	}
}

func grepFile(path string, words ...string) string {
	data, _ := os.ReadFile(path)
	var keep []string
	for _, l := range strings.Split(string(data), "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				keep = append(keep, l)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}
