# One command to set up and run the demo, one to set up and run the tests.
# Both create (or reuse) the virtualenv at .venv and install the project with its training, Dask and test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.autoenc-installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup data wide-data speech-data demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[train,dask,test]'
	touch $(STAMP)

setup: $(STAMP)

# Real data from Debian packages: Asterisk speech and music (CC-BY-SA-3.0), decoded into
# ~/.cache/autoenc/corpus/{speech,music}, and Fashion-MNIST (MIT). Installs them where apt-get can.
data: $(STAMP)
	@bash scripts/debian-data.sh $(PY)

speech-data: data

# The wider photo corpus (data.corpus: photos-wide): Endless Sky's ~260 photographs (Debian
# endless-sky-high-dpi, ~140 MB, unpacked only), licences per file from its copyright file.
wide-data: $(STAMP) data
	@bash scripts/debian-data.sh $(PY) --wide

demo: $(STAMP) data
	$(VENV)/bin/autoenc demo

test: $(STAMP) data
	$(PY) -m pytest -q

bench: $(STAMP) data wide-data
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/image_speed.py
	$(PY) benchmarks/audio_speed.py --config configs/speech-wiener.yaml
	$(PY) benchmarks/pipeline_overhead.py --files 1000 --model autoenc/pretrained/image-gray.onnx
	$(PY) benchmarks/load.py --files 10000 --image-model autoenc/pretrained/image-gray.onnx --audio-model autoenc/pretrained/speech.onnx
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/adhoc.py
	$(PY) benchmarks/camera_quality.py --int8 photo-int8
	$(PY) benchmarks/level_calibration.py
	$(PY) benchmarks/image_quality.py --ensemble
	$(PY) benchmarks/image_quality.py --color
	git show 41133b2:autoenc/pretrained/speech.onnx > /tmp/speech-prev.onnx
	git show 7a56225:autoenc/pretrained/speech.onnx > /tmp/speech-context.onnx
	$(PY) benchmarks/audio_quality.py --model speech --model speech-int8 --model /tmp/speech-prev.onnx --model /tmp/speech-context.onnx

clean:
	rm -rf runs demo .pytest_cache
