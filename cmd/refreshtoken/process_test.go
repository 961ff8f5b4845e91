package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadline bounds every wait on a process: a wait that times out is a
// failure, never a timing claim.
const deadline = 30 * time.Second

// proc is the binary running in the background, its output read line by
// line as it comes.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string   // the watched stream's lines; closed at its end
	done   chan struct{} // closed when the process has exited
	code   int           // exit status, once done is closed
	mu     sync.Mutex
	output bytes.Buffer // everything the process wrote, for failure messages
}

// start runs the binary with args and env (the whole environment), and
// watches its standard error, or its standard output if watchStdout.
func start(t *testing.T, env []string, watchStdout bool, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binary, args...), lines: make(chan string, 1000), done: make(chan struct{})}
	p.cmd.Env = env
	r, w := io.Pipe()
	other := writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.output.Write(b)
	})
	watched := io.MultiWriter(w, other)
	if watchStdout {
		p.cmd.Stdout, p.cmd.Stderr = watched, other
	} else {
		p.cmd.Stdout, p.cmd.Stderr = other, watched
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody reads this far: the process must not block
			}
		}
		close(p.lines)
		io.Copy(io.Discard, r)
	}()
	go func() {
		err := p.cmd.Wait()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			p.code = exit.ExitCode()
		case err != nil:
			p.code = -1
		}
		w.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// line returns the first line to come that holds substr.
func (p *proc) line(substr string) string {
	p.t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("the process ended its output without a line holding %q; output:\n%s", substr, p.out())
			}
			if strings.Contains(l, substr) {
				return l
			}
		case <-timeout:
			p.t.Fatalf("no line holding %q within %v; output:\n%s", substr, deadline, p.out())
		}
	}
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(deadline):
		p.t.Fatalf("the process did not exit within %v; output:\n%s", deadline, p.out())
	}
	return 0
}

// out is everything the process has written so far.
func (p *proc) out() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}
