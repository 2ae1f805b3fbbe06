# bellmax: `make demo` (main job) and `make test` (whole test suite) install what they need first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,mujoco,atari,box2d,rlhf,arena,ray
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install demo test test-fast bench lint clean

# Idempotent: reinstalls only when pyproject.toml or constraints.txt changed.
install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: install
	@set -e; run=runs/demo-ppo-CartPole-v1-$$(date +%Y%m%d-%H%M%S); \
	echo "== 1. Exact dynamic programming: value iteration on the lecture's 4x3 gridworld"; \
	$(BIN)/bellmax solve gridworld --method value-iteration --gamma 0.9 --noise 0.2; \
	echo; echo "== 2. PPO on CartPole-v1 until the deterministic policy scores 500 (the maximum)"; \
	$(BIN)/bellmax train ppo --env CartPole-v1 --seed 1 --stop-at-return 500 --run-dir $$run; \
	echo; echo "== 3. Deterministic evaluation of the trained policy"; \
	$(BIN)/bellmax eval $$run --episodes 20; \
	echo; echo "== 4. Learning curve"; \
	$(BIN)/bellmax plot $$run -o $$run/learning_curve.png

test: install
	$(BIN)/python -m pytest tests

test-fast: install
	$(BIN)/python -m pytest tests -m "not slow"

# bellmax vs Stable-Baselines3 (docs/BENCHMARKS.md): needs the `bench` and `mujoco` extras, installed
# here if missing. About 50 min (sac-pendulum alone about 20: SB3 SAC takes about 5 min a run);
# `make bench MUJOCO=1` adds PPO, A2C and TRPO on HalfCheetah/Hopper (about 3 h) and SAC and TD3 on
# HalfCheetah, two processes at a time (about 2.5 h more). On a lent machine with many cores:
# benchmarks/gpu_machine*.sh (see docs/BENCHMARKS.md).
bench: install
	$(BIN)/python benchmarks/vpg_weightings.py
	@$(BIN)/python -c "import stable_baselines3, sb3_contrib, mujoco" 2>/dev/null || \
		$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e ".[$(EXTRAS),bench,mujoco]"
	$(BIN)/bellmax bench ppo-cartpole --seeds 5 --out-dir docs/images
	$(BIN)/bellmax bench ppo-cartpole --same-hparams --seeds 3 --out-dir docs/images
	$(BIN)/bellmax bench dqn-cartpole --seeds 5 --out-dir docs/images
	$(BIN)/bellmax bench sac-pendulum --seeds 3 --out-dir docs/images
	$(BIN)/bellmax bench rollout --env HalfCheetah-v5 --out-dir docs/images
	$(BIN)/bellmax bench rollout --env ALE/Pong-v5 --steps 10000 --out-dir docs/images
	$(BIN)/python benchmarks/dqn_pong.py --out docs/images/bench_dqn_pong.json
	$(BIN)/python benchmarks/offpolicy_update_cost.py --out docs/images/bench_update_cost.json
	@if [ -n "$(MUJOCO)" ]; then set -e; for algo in ppo a2c trpo; do for env in HalfCheetah-v5 Hopper-v5; do \
		$(BIN)/bellmax bench mujoco --algo $$algo --env $$env --steps 200000 --seeds 3 --out-dir docs/images; \
		done; done; for algo in sac td3; do \
		$(BIN)/bellmax bench mujoco --algo $$algo --env HalfCheetah-v5 --steps 100000 --seeds 3 --jobs 2 --out-dir docs/images; \
		done; fi

# ruff, and mypy over src/bellmax (its settings are in pyproject.toml): zero errors, in CI too
lint: install
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
