# radiomicsd: every set-up step lives here, so a fresh machine needs only `make run` / `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test bench lint clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[analysis,dev]'
	touch $(STAMP)

install: $(STAMP) system-deps

## system-deps: Debian packages the checks need, as root: Tesseract's English model (the OCR
## check before commit; without it verify.ocr: auto is off), dicom3tools (dciodvfy validates
## the DICOM output), dcmtk (storescu/echoscu: the sending device of the SCP tests), orthanc
## (the research PACS of the end-to-end tests) and postgresql (the replicas' journal server of
## the tests and the bench); services installed without being started.
## Without root they are reported and the tests that need them skip (outside CI).
SYSTEM_DEPS := /usr/share/tesseract-ocr/5/tessdata/eng.traineddata:tesseract-ocr-eng \
	/usr/bin/dciodvfy:dicom3tools /usr/bin/storescu:dcmtk /usr/sbin/Orthanc:orthanc \
	/usr/lib/postgresql:postgresql
system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
		[ -e "$${dep%%:*}" ] || missing="$$missing $${dep##*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing from Debian's archive"; \
			guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; \
				printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
				chmod 755 /usr/sbin/policy-rc.d; fi; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				$$missing >/dev/null 2>&1 \
			 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			      --no-install-recommends $$missing >/dev/null; }); rc=$$?; \
			[ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
		else echo "warning: not root, not installed:$$missing" >&2; fi; \
	fi

## run: generate sample echo videos into samples/in and anonymise them into samples/out
run: $(STAMP) system-deps
	$(BIN)/python -m radiomicsd.testing.synthetic --out samples/in --set sample
	$(BIN)/radiomicsd anonymise -i samples/in -o samples/out --state samples/state
	@echo "results: $$(pwd)/samples/out"

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest -q

.PHONY: typecheck test-fast

## test-fast: ruff, mypy and the tests not marked slow
test-fast: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest -q -m "not slow"

## typecheck: mypy over the radiomicsd.* names (settings in pyproject.toml). mypy follows neither
## the package-dir mapping nor the editable install's import hook, so build/typecheck/radiomicsd/
## is laid out first: links onto radiomicsd/'s entries and onto daemon/, pipeline/, classifiers/.
TYPECHECK_TREE := build/typecheck/radiomicsd
typecheck: $(STAMP)
	@rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)
	@for p in radiomicsd/* daemon pipeline classifiers; do \
		ln -s "$(CURDIR)/$$p" $(TYPECHECK_TREE)/; done
	$(BIN)/mypy

## bench: speed/memory tables against floors measured in the same run (JSON in bench/results/)
bench: $(STAMP) system-deps
	$(BIN)/python bench/anonymise.py
	$(BIN)/python bench/daemon.py
	$(BIN)/python bench/analysis.py
	$(BIN)/python bench/dicom.py
	$(BIN)/python bench/pacs.py
	$(BIN)/python bench/replicas.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) samples build *.egg-info

.PHONY: install-systemd test-deploy

## install-systemd: (root) the project into /opt/radiomicsd/venv, the unit, user, folders, config
install-systemd:
	PYTHON=$(PYTHON) systemd/install.sh

## test-deploy: build and run the sidecar image and the unit under systemd, in podman (root)
test-deploy: $(STAMP)
	tests/deploy/setup.sh
	RADIOMICSD_DEPLOY_TESTS=1 CONTAINERS_CONF=$(CURDIR)/tests/deploy/containers.conf \
		$(BIN)/pytest -q -rs tests/deploy
