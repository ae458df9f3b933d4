# CUDA-capable image with the pinned stack; runs any script of the repo.
#   docker build -t orl .
#   docker run --rm --gpus all -v ~/.d4rl:/root/.d4rl -v "$PWD/runs:/workspace/runs" orl \
#       python algorithms/offline/dt.py --config_path configs/offline/dt/hopper/medium_v2.yaml
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 WANDB_MODE=offline MUJOCO_GL=egl
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libegl1 \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /workspace
COPY requirements.txt pyproject.toml ./
COPY d4rl_compat d4rl_compat
RUN pip install -r requirements.txt
COPY . .
CMD ["bash", "quickstart.sh"]
