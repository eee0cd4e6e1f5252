"""`python -m service.dev.simulator`: run the simulator configured from `SIMULATOR_*` variables."""

from service.dev.simulator import SimulatorConfig, serve

if __name__ == "__main__":
    serve(SimulatorConfig())
