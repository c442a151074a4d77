package fakegate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a Gate listening on a TCP address. Fault{Down: true} closes
// the listener and every open connection (clients see "connection
// refused"); clearing it listens again on the same address.
type Server struct {
	*Gate
	// URL is the endpoint, e.g. http://127.0.0.1:41234 (no trailing slash).
	URL  string
	addr string
	srv  *http.Server

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	// accepted counts the connections ever accepted.
	accepted int
	down     bool
	closed   bool
	done     sync.WaitGroup
}

// TB is the part of testing.TB that Start needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Start runs an empty gate on a loopback port for the length of a test.
func Start(tb TB) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		tb.Fatalf("fakegate: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Listen runs an empty gate on addr until Close. log may be nil.
func Listen(addr string, log io.Writer) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakegate: listen %s: %w", addr, err)
	}
	s := &Server{Gate: New(log), addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	s.URL = "http://" + s.addr
	s.Gate.SetEndpoint(s.URL)
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.trackConn,
	}
	s.Gate.mu.Lock()
	s.Gate.onDown = s.setDown
	s.Gate.mu.Unlock()
	s.serve(ln)
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	s.ln = ln
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		_ = s.srv.Serve(ln)
	}()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down { // a request that slipped in before the connection was cut
		panic(http.ErrAbortHandler)
	}
	s.Gate.ServeHTTP(w, r)
}

func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		if s.down {
			_ = c.Close()
			return
		}
		s.conns[c] = true
		s.accepted++
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// Accepted is the number of connections accepted so far: a client that
// keeps its connection alive opens one for many requests.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

func (s *Server) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || down == s.down {
		return
	}
	s.down = down
	if down {
		_ = s.ln.Close()
		for c := range s.conns {
			_ = c.Close()
		}
		return
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil { // the port was taken meanwhile; stay down
		s.down = true
		return
	}
	s.serve(ln)
}

// Close stops the server.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.srv.Close()
	s.done.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Serve runs a gate set up from cfg on addr until ctx ends.
func Serve(ctx context.Context, addr string, cfg ServeConfig, log io.Writer) error {
	s, err := Listen(addr, log)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	if cfg.Endpoint != "" {
		s.SetEndpoint(cfg.Endpoint)
	}
	if err := cfg.apply(s.Gate); err != nil {
		return err
	}
	if log != nil {
		fmt.Fprintf(log, "fake OneGate listening on %s (VM %d)\n", s.URL, cfg.VMID)
	}
	<-ctx.Done()
	return nil
}
