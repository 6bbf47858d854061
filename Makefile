# authz: make build | test | bench | lint | demo
GO      ?= go
BIN     := bin/authz
PKGS    := ./...

.PHONY: all build test test-race-e2e unit bench bench-go bench-load bench-logout bench-fanout soak lint demo deps clean fuzz docs

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/authz

deps:
	scripts/install-deps.sh

# The whole suite: unit, integration (real redis-server) and end-to-end (real
# nginx + authz + redis). Fuzz targets run their seed corpus. Installs what
# is missing first (scripts/install-deps.sh: quick when nothing is).
test: deps
	$(MAKE) --no-print-directory lint build
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

# The end-to-end stories with the authz binary built with -race too (slower).
test-race-e2e:
	AUTHZ_BUILD_FLAGS=-race GORACE=halt_on_error=1 $(GO) test -race -count=1 -timeout 10m ./e2e/

unit:
	$(GO) test -count=1 ./authz/ ./frontdoor/ ./logout/

bench: bench-go bench-load bench-logout

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./authz/ ./frontdoor/ | tee bin/bench-go.txt

bench-load: build
	scripts/loadtest.sh

# Single sign-off: propagation across 8 instances, and the cost of tracking.
bench-logout:
	$(GO) test -run '^$$' -bench 'LogoutPropagation|VerifyTrackingCost' -benchtime 1x ./e2e/ | tee bin/bench-logout.txt

# Invalidation fan-out, reads mode against BCAST (and reads mode on a
# 3-master Cluster): 4/8/16 instances x 0/2k/20k/50k session writes/s x
# 10k/100k live sessions (docs/scale.md). Not in bench: about 10 minutes of
# a busy machine.
bench-fanout:
	@mkdir -p bin
	$(GO) test -run '^$$' -bench TrackingFanout -benchtime 1x -timeout 30m ./e2e/ | tee bin/bench-fanout.txt

# Constant-rate load through Nginx with logouts mixed in, then a report
# (docs/scale.md): SOAK_DURATION=30s make soak for a quick try.
SOAK_DURATION ?= 5m
soak:
	@mkdir -p bin
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 0 ./e2e/

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

demo: deps
	$(MAKE) --no-print-directory build
	scripts/demo.sh

clean:
	rm -rf bin

# Coverage-guided fuzzing beyond the seed corpus `make test` runs.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzUnsign -fuzztime $(FUZZTIME) ./authz/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./authz/
	$(GO) test -run '^$$' -fuzz FuzzParser -fuzztime $(FUZZTIME) ./frontdoor/
	$(GO) test -run '^$$' -fuzz FuzzClientSessions -fuzztime $(FUZZTIME) ./sessionfmt/
	$(GO) test -run '^$$' -fuzz FuzzCookieSession -fuzztime $(FUZZTIME) ./sessionfmt/
	$(GO) test -run '^$$' -fuzz FuzzFastifySession -fuzztime $(FUZZTIME) ./sessionfmt/
	$(GO) test -run '^$$' -fuzz FuzzCookieFormatsReadPath -fuzztime $(FUZZTIME) ./authz/

# Regenerate the flag tables in docs/configuration.md from the commands'
# flags; TestFlagTables (run by make test) fails on any drift.
docs:
	$(GO) test -count=1 -run '^TestFlagTables$$' ./cmd/authz/ -update
