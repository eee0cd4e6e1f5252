"""`python -m service.simulator`: run the simulator configured from `SIMULATOR_*` variables."""

from service.simulator import SimulatorConfig, serve

if __name__ == "__main__":
    serve(SimulatorConfig())
