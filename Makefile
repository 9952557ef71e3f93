# Every target installs what it needs first (the virtualenv is created on demand).
# Variables: CONFIG (recipe), CKPT (checkpoint), NAME (export name), MODEL (served model),
# DATA (dataset folder: the synthetic one, or `make dataset`'s), DATA_ARGS (generator flags), VIDEO (file, folder or list file for predict),
# OUT (predict's results file, .jsonl or .csv),
# ARGS (extra arguments for the train/test/eval/frames command), EVAL_MODE (uniform|dense),
# SPLIT (the list eval scores), WORKERS (frame extraction processes), PRECISION (serve: fp32 |
# int8 | bf16, default the config's; compare-precision: bf16 | int8, default bf16), ENGINE
# (quantize: paddle | openvino, default paddle),
# NPROC (data-parallel training processes; default: the recipe's train.processes),
# SRC (dataset: folder of class sub-folders), FROM (train: checkpoint to fine-tune from).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

CONFIG ?= train/configs/demo/pptsmv2_lcnet_synthetic_demo.yaml
DATA ?= data/synthetic
OUTPUT ?= output/pptsmv2_demo
CKPT ?= $(OUTPUT)/best.pdparams
NAME ?= pptsm
MODEL ?= pptsm
HTTP_PORT ?= 18080
RPC_PORT ?= 9993
FORMAT ?= auto
EVAL_MODE ?= uniform
SPLIT ?= test
WORKERS ?= 2
export PYTHONPATH := $(CURDIR)
export PYTHONUNBUFFERED := 1
# Paddle Serving writes its logs and ProcessInfo.json here instead of the working directory.
export SERVING_LOG_PATH := $(CURDIR)/output/serving-logs
export SERVING_HOME := $(CURDIR)/output/serving-logs
# Paddle's chatter kept out of what a person reads, real errors kept: glog's INFO and WARNING
# lines ("New Executor is Running", PIR notices; ERROR and FATAL still print) and the known
# import- and run-time UserWarnings below (no ccache, CPU-only GLOO, batch-norm statistics, PIR
# `place`). Set either variable on the command line (e.g. GLOG_minloglevel=0) to see them again.
export GLOG_minloglevel ?= 2
export PYTHONWARNINGS ?= ignore:No ccache found:UserWarning,ignore:Your model will be trained under CPUONLY:UserWarning,ignore:When training:UserWarning,ignore:Tensor do not have:UserWarning

.PHONY: install data data-ready dataset frames train eval export import serve quantize compare-precision demo test loadtest predict bench timeline-accuracy \
  clean help \
  docker-cpu docker-gpu docker-lint docker-test
help:
	@echo "make demo     # install, data, train, export, serve, classify the test clips"
	@echo "make test     # the test suite"
	@echo "make install | data | dataset | frames | train | eval | export | serve | quantize | compare-precision | predict | bench   (see README.md)"
	@echo "make docker-cpu | docker-gpu | docker-lint | docker-test   (Docker deployment)"

install: $(STAMP)
$(STAMP): requirements/base.txt requirements/openvino.txt requirements/train.txt requirements/onnx.txt requirements/serving-nodeps.txt \
  requirements/install.sh requirements/regen_serving_pb2.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash requirements/install.sh $(PY) train
	@touch $@

# The dataset is generated once; DATA_ARGS=--force regenerates it (see --help for counts, seed).
data: $(STAMP)
	@if [ -f $(DATA)/test.list ] && [ -z "$(DATA_ARGS)" ]; then echo "$(DATA) exists; skipping (DATA_ARGS=--force regenerates)"; \
	else $(PY) -m train.data.synthetic --out $(DATA) $(DATA_ARGS); fi

# What train, eval, frames and quantize read: the synthetic set is made on demand, any other DATA
# must already hold lists (a DATA folder that does not exist is never filled with synthetic clips
# by surprise: `make data DATA=...` asks for that explicitly).
DEFAULT_DATA := data/synthetic
data-ready: $(STAMP)
	@if [ -f $(DATA)/train.list ]; then :; \
	elif [ "$(DATA)" = "$(DEFAULT_DATA)" ]; then $(MAKE) --no-print-directory data; \
	else echo "$(DATA) has no train.list: make dataset SRC=<folder of class sub-folders> DATA=$(DATA) for your videos, or make data DATA=$(DATA) for a synthetic set" >&2; exit 2; fi

# Your own videos: SRC/<class>/**/<video> -> DATA's lists and label list, every file probed
# (python -m train.data.folder_dataset --help; ARGS="--split 0.7 0.15 0.15", --labels, --force).
dataset: $(STAMP)
	$(PY) -m train.data.folder_dataset --src $(SRC) --out $(DATA) $(ARGS)

# JPEG frame folders of every list of $(DATA) in $(DATA)/rawframes, plus <split>_frames.list
# files; resumable (folders already extracted are skipped).
frames: data-ready
	$(PY) -m train.extract_frames --root $(DATA) --out $(DATA)/rawframes --workers $(WORKERS) \
	  $(foreach split,train val test,--list $(DATA)/$(split).list) $(ARGS)

train: data-ready
	$(PY) -m train.train -c $(CONFIG) -o data.root=$(DATA) -o train.output_dir=$(OUTPUT) \
	  $(if $(FROM),-o train.finetune_from=$(FROM)) $(if $(NPROC),--nproc $(NPROC)) $(ARGS)

# Scores CKPT on the SPLIT list: report.json + confusion.png in eval-<split>-<mode>/ beside CKPT.
eval: data-ready
	$(PY) -m train.eval -c $(CONFIG) -k $(CKPT) --mode $(EVAL_MODE) --split $(SPLIT) \
	  -o data.root=$(DATA) $(ARGS)

# FORMAT=auto|pdmodel|json picks the program format; FORMAT=onnx also writes model.onnx.
export: $(STAMP)
	$(PY) -m train.export -c $(CONFIG) -k $(CKPT) -n $(NAME) \
	  --format $(if $(filter onnx,$(FORMAT)),auto,$(FORMAT)) -o data.root=$(DATA)
	$(if $(filter onnx,$(FORMAT)),$(PY) -m train.onnx_export --model-dir model_repo/$(NAME))

# Imports a model exported by PaddleVideo's own exporter: make import SRC=dir NAME=x CONFIG=recipe
import: $(STAMP)
	$(PY) -m train.import_model --src $(SRC) --name $(NAME) -c $(CONFIG)

serve: $(STAMP)
	$(if $(PRECISION),PPTSM_PRECISION=$(PRECISION)) $(PY) -m serving.pipeline.service \
	  --model-dir model_repo/$(MODEL) --config pipeline_config/config.yml \
	  --http-port $(HTTP_PORT) --rpc-port $(RPC_PORT)

# int8 copy of model_repo/$(MODEL) in model_repo/$(MODEL)-int8, calibrated on training clips of
# $(DATA) and checked against fp32 on its test clips; serve it with
# make serve MODEL=$(MODEL)-int8 PRECISION=int8
# ENGINE=openvino: NNCF int8 (accuracy-controlled) into model_repo/$(MODEL)/openvino/, calibrated
# on the training clips, published only if it gives fp32's top-1 on >= 99.5% of the validation
# clips (recorded in model_meta.json; `precision: auto` may then serve it). docs/cpu-engines.md
quantize: data-ready
ifeq ($(ENGINE),openvino)
	$(PY) -m serving.tools.quantize --engine openvino --model-dir model_repo/$(MODEL) \
	  --calibration $(DATA)/train.list --check $(DATA)/val.list
else
	$(PY) -m serving.tools.quantize --model-dir model_repo/$(MODEL) --out model_repo/$(MODEL)-int8 \
	  --calibration $(DATA)/train.list --check $(DATA)/test.list
endif

# bf16 or int8 against fp32 on the test clips of $(DATA): top-1 agreement, logit difference,
# accuracy, inference ms. int8 compares model_repo/$(MODEL)-int8 (make quantize first).
compare-precision: data-ready
	$(PY) -m serving.tools.precision_check --model-dir model_repo/$(MODEL) --precision $(or $(PRECISION),bf16) \
	  --list $(DATA)/test.list

demo: data
	@if [ ! -f model_repo/$(MODEL)/model_meta.json ]; then \
	  $(MAKE) --no-print-directory train && $(MAKE) --no-print-directory export NAME=$(MODEL); fi
	$(PY) -m serving.tools.launcher --model-dir model_repo/$(MODEL) --config pipeline_config/config.yml \
	  --http-port $(HTTP_PORT) --rpc-port $(RPC_PORT) -- \
	  $(PY) client/pipeline_http_client.py --url http://127.0.0.1:$(HTTP_PORT)/pptsm/prediction --list $(DATA)/test.list \
	  --labels $(DATA)/label_list.txt

# 1000 requests at concurrency 16, valid and invalid videos mixed, against model_repo/$(MODEL).
# ARGS=--hostile: 16 honest clients alone, then beside 4 hostile ones (bench/hostile_load.py):
# honest p50 both ways and their ratio; fails if an honest answer is wrong or lost.
LOAD_DIR ?= output/loadtest-mix
loadtest: data
	rm -rf $(LOAD_DIR) && mkdir -p $(LOAD_DIR)
	cp $$(ls $(DATA)/videos/test/*/* | head -16) $(LOAD_DIR)/
ifneq ($(filter --hostile,$(ARGS)),)
	$(PY) -m bench.hostile_load --model-dir model_repo/$(MODEL) --videos $(LOAD_DIR) \
	  $(filter-out --hostile,$(ARGS))
else
	head -c 5000 /dev/urandom > $(LOAD_DIR)/random.mp4
	head -c 40000 $$(ls $(DATA)/videos/test/*/*.mp4 | head -1) > $(LOAD_DIR)/cut.mp4
	yes notes | head -500 > $(LOAD_DIR)/text.avi
	$(PY) -m serving.tools.launcher --model-dir model_repo/$(MODEL) --config pipeline_config/config.yml \
	  --http-port $(HTTP_PORT) --rpc-port $(RPC_PORT) -- \
	  $(PY) client/pipeline_http_client.py $(LOAD_DIR) --url http://127.0.0.1:$(HTTP_PORT)/pptsm/prediction \
	  --concurrency 16 --repeat 50
endif

# In-process classification with the service's own code (docs/batch-predict.md):
# make predict VIDEO=clip.mp4|folder|list [OUT=results.jsonl|results.csv] [MODEL=pptsm]
#   [ARGS="--resume --workers 2 --mode uniform|dense|timeline --format csv --benchmark 10"]
predict: $(STAMP)
	$(PY) -m serving.tools.predict --model-dir model_repo/$(MODEL) --video $(VIDEO) \
	  $(if $(OUT),--out $(OUT)) $(ARGS)

# Latency tables, lower precisions vs fp32 (on the synthetic clips: made first if missing),
# serving throughput, decoding, preprocessing step by step; QUICK=1 for a smoke run (< 3 minutes).
# ARGS="--peer PATH" (a PaddleVideo checkout) adds its own predictor beside ours on the same clips
# and weights, in a side venv made on first use in output/peer-venv/ (docs/preprocessing.md).
bench: data
	$(PY) -m bench.run_bench $(if $(QUICK),--quick) $(ARGS)

# The timeline proof for model_repo/$(MODEL): windows right and boundaries found on long synthetic
# videos (written first if missing); exit status 1 below 90% (docs/long-videos.md).
# ARGS="--long 8 --seed 1 --videos DIR" for another set.
timeline-accuracy: $(STAMP)
	$(PY) -m bench.timeline --model model_repo/$(MODEL) $(ARGS)

# browser.sh: Playwright and Debian's chromium for the page's browser test (skipped without them).
test: $(STAMP)
	bash requirements/browser.sh $(PY)
	$(PY) -m pytest tests -q $(ARGS)

clean:
	rm -rf $(OUTPUT) model_repo/$(NAME) .pytest_cache

# Docker deployment (docs/docker.md). The images serve model_repo/, mounted by compose.
docker-cpu:
	docker compose build pptsm

docker-gpu:
	docker compose --profile gpu build pptsm-gpu

# hadolint on both Dockerfiles, the Kubernetes manifest against the API schema, and every compose
# variant through `docker compose config` (installs the Compose v2 plugin if missing).
LINT_VENV := .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed-stamp
K8S_VERSION ?= 1.30.0
$(LINT_STAMP): requirements/lint.txt
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements/lint.txt
	@touch $@

docker-lint: $(LINT_STAMP)
	$(LINT_VENV)/bin/hadolint docker/Dockerfile.cpu docker/Dockerfile.gpu
	$(LINT_VENV)/bin/kubernetes-validate --strict -k $(K8S_VERSION) docker/k8s/pptsm.yaml
	bash docker/engine.sh compose
	docker compose config -q
	docker compose --profile gpu config -q
	docker compose -f docker-compose.yml -f docker-compose.scale.yml config -q
	@echo "docker-lint: Dockerfiles, Kubernetes manifest and compose variants pass"

# Engine, build, `docker compose up`, REST + gRPC classification, bad requests, down (bench/docker_e2e.py).
docker-test: $(STAMP) docker-lint
	$(PY) -m bench.docker_e2e
