# The controller's wiring and settings (MicroPython): defaults for a Raspberry Pi Pico
# wired as docs/bench.md shows, overridden by bench_config.json on the board's
# filesystem (``impfactory bench flash --config FILE`` puts it there).
import json

DEFAULTS = {
    "name": "impfactory pico bench",
    "led_pin": 15,  # light-out LED (PWM)
    "led_pwm_hz": 50000,
    "light_in_adc": 0,  # ADC channel (0 = GP26)
    "i2c_id": 0,
    "sda_pin": 4,
    "scl_pin": 5,
    "i2c_hz": 400000,
    "colour_addr": 0x29,  # TCS34725
    "colour_atime": 0xFC,  # 4 cycles of 2.4 ms: 9.6 ms, up to 100 reads/s of fresh data
    "colour_gain": 1,  # CONTROL register: 0 1x, 1 4x, 2 16x, 3 60x
    "colour_full": 4080,  # the count that reads 255 (calibration, docs/bench.md)
    "power_pin": 16,
    "power_at_boot": 0,
    "button_pin": 17,
    "uart_id": 1,
    "uart_tx_pin": 8,
    "uart_rx_pin": 9,
    "uart_baud": 115200,
    "light_out_max": 16384,  # symbols one light-out may hold
}

FILE = "bench_config.json"


def load(path=FILE):
    """DEFAULTS with the board's bench_config.json on top (when there is one)."""
    config = dict(DEFAULTS)
    try:
        with open(path) as f:
            given = json.load(f)
    except OSError:
        return config
    for key in given:
        if key not in DEFAULTS:
            raise ValueError("bench_config.json: unknown setting " + key)
        config[key] = given[key]
    return config
