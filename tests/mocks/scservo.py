"""A fake Feetech STS3215 serial bus behind scservo_sdk's surface (PyPI feetech-servo-sdk).

`FeetechBus` holds the servos, each a byte-addressed control table like the real one (Torque_Enable
40, Goal_Position 42, Lock 55, Present_Position 56, Present_Velocity 58, Status 65; little-endian
words, velocity sign-magnitude with bit 15 as sign). `sdk()` returns a namespace with the names
a backend uses: PortHandler, PacketHandler, GroupSyncRead, GroupSyncWrite and the COMM_* codes.

Behaviour copied from the SDK (scservo_sdk/*.py) and the servos:
  * replies carry the servo's hardware error bits in their error byte (ERRBIT_*), as the status
    packet does; GroupSyncRead drops them (as the SDK's rxPacket does), so the Status register
    is the way to see them in a sync read;
  * overload / overheat / overcurrent unload the torque (the servo goes limp and ignores goals);
    writing Torque_Enable = 1 clears the error bits that are not `persistent` and drives to the
    current Goal_Position register, stale or not, as a real servo would;
  * each GroupSyncRead.txRxPacket advances every torqued servo toward its goal by `max_step` ticks;
  * `rx_timeouts = n` makes the next n replies COMM_RX_TIMEOUT; `unplug()` makes every port
    access raise OSError, as pyserial's SerialException does when the USB adapter disappears.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

COMM_SUCCESS, COMM_PORT_BUSY, COMM_TX_FAIL, COMM_RX_FAIL = 0, -1, -2, -3
COMM_TX_ERROR, COMM_RX_WAITING, COMM_RX_TIMEOUT, COMM_RX_CORRUPT, COMM_NOT_AVAILABLE = -4, -5, -6, -7, -9
ERRBIT_VOLTAGE, ERRBIT_ANGLE, ERRBIT_OVERHEAT, ERRBIT_OVERELE, ERRBIT_OVERLOAD = 1, 2, 4, 8, 32
SENSOR, ANGLE_LIMIT = 0x02, 0x10  # Status register bits 1 and 4 (memory table names)
UNLOADING = ERRBIT_OVERHEAT | ERRBIT_OVERELE | ERRBIT_OVERLOAD  # errors that drop the torque

TORQUE_ENABLE, GOAL_POSITION, LOCK, PRESENT_POSITION, PRESENT_VELOCITY, STATUS = 40, 42, 55, 56, 58, 65
STS3215_MODEL = 777

_RESULT_TEXT = {COMM_SUCCESS: "[TxRxResult] Communication success!", COMM_TX_FAIL: "[TxRxResult] Failed transmit "
                "instruction packet!", COMM_RX_TIMEOUT: "[TxRxResult] There is no status packet!",
                COMM_RX_CORRUPT: "[TxRxResult] Incorrect status packet!"}


class Servo:
    """One STS3215: a 90-byte control table plus the few behaviours the backend depends on."""

    def __init__(self, servo_id: int, ticks: int = 2048) -> None:
        self.id = servo_id
        self.table = bytearray(90)
        self.write_word(3, STS3215_MODEL)
        self.table[5] = servo_id
        self.write_word(PRESENT_POSITION, ticks)
        self.write_word(GOAL_POSITION, ticks)
        self.persistent = 0  # error bits that writing Torque_Enable does not clear

    def word(self, address: int) -> int:
        return self.table[address] | (self.table[address + 1] << 8)

    def write_word(self, address: int, value: int) -> None:
        self.table[address], self.table[address + 1] = value & 0xFF, (value >> 8) & 0xFF

    @property
    def position(self) -> int:
        return self.word(PRESENT_POSITION)

    @property
    def goal(self) -> int:
        return self.word(GOAL_POSITION)

    @property
    def status(self) -> int:
        return self.table[STATUS]

    @property
    def torque(self) -> bool:
        return bool(self.table[TORQUE_ENABLE])

    def write(self, address: int, data: list[int]) -> None:
        for i, byte in enumerate(data):
            self.table[address + i] = byte & 0xFF
        if address == TORQUE_ENABLE and data[0] == 1:
            self.table[STATUS] &= self.persistent
            if self.table[STATUS] & UNLOADING:
                self.table[TORQUE_ENABLE] = 0

    def set_position(self, ticks: int) -> None:
        """Move the shaft by hand (or let it sag while limp)."""
        self.write_word(PRESENT_POSITION, ticks)

    def step(self, max_step: int, dt: float) -> None:
        delta = 0
        if self.torque:
            delta = max(-max_step, min(max_step, self.goal - self.position))
            self.write_word(PRESENT_POSITION, self.position + delta)
        speed = round(abs(delta) / dt)
        self.write_word(PRESENT_VELOCITY, (speed | 0x8000) if delta < 0 else speed)


class FeetechBus:
    """The simulated bus: servos by id, plus the failures a test can inject."""

    def __init__(self, ids: tuple[int, ...] = (1, 2, 3, 4, 5, 6), ticks: int = 2048, max_step: int = 40,
                 dt: float = 1 / 30) -> None:
        self.servos = {sid: Servo(sid, ticks) for sid in ids}
        self.max_step, self.dt = max_step, dt
        self.plugged = True
        self.rx_timeouts = 0
        self.calls: list[tuple] = []

    def sdk(self) -> SimpleNamespace:
        """The scservo_sdk surface bound to this bus."""
        bus = self
        return SimpleNamespace(
            PortHandler=lambda port_name: PortHandler(bus, port_name), PacketHandler=PacketHandler,
            GroupSyncRead=GroupSyncRead, GroupSyncWrite=GroupSyncWrite, COMM_SUCCESS=COMM_SUCCESS,
            COMM_TX_FAIL=COMM_TX_FAIL, COMM_RX_TIMEOUT=COMM_RX_TIMEOUT, COMM_RX_CORRUPT=COMM_RX_CORRUPT)

    def called(self, name: str, *args: Any) -> int:
        """Calls of `name` whose leading arguments equal `args`."""
        return sum(1 for call in self.calls if call[0] == name and call[1:1 + len(args)] == args)

    def inject_error(self, servo_id: int, bits: int, persistent: bool = False) -> None:
        """Set hardware error bits; overload/overheat/overcurrent also drop the servo's torque."""
        servo = self.servos[servo_id]
        servo.table[STATUS] |= bits
        if persistent:
            servo.persistent |= bits
        if bits & UNLOADING:
            servo.table[TORQUE_ENABLE] = 0

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    def _io(self) -> None:
        if not self.plugged:
            raise OSError(5, "write failed: [Errno 5] Input/output error")

    def _reply(self) -> int:
        """COMM_SUCCESS, or COMM_RX_TIMEOUT while injected timeouts last."""
        if self.rx_timeouts > 0:
            self.rx_timeouts -= 1
            return COMM_RX_TIMEOUT
        return COMM_SUCCESS


class PortHandler:
    def __init__(self, bus: FeetechBus, port_name: str) -> None:
        self.bus, self.port_name = bus, port_name
        self.is_open = False
        self.baudrate = 1_000_000

    def openPort(self) -> bool:
        self.bus._io()
        self.is_open = True
        return True

    def closePort(self) -> None:
        self.bus.calls.append(("closePort",))
        self.is_open = False

    def setBaudRate(self, baudrate: int) -> bool:
        self.bus._io()
        self.baudrate = baudrate
        return baudrate in (1_000_000, 500_000, 250_000, 128_000, 115_200, 57_600, 38_400, 19_200)


class _PacketHandler:
    """protocol_packet_handler: single-servo transactions; replies carry the hardware error byte."""

    def getTxRxResult(self, result: int) -> str:
        return _RESULT_TEXT.get(result, f"[TxRxResult] result {result}")

    def getRxPacketError(self, error: int) -> str:
        names = {ERRBIT_VOLTAGE: "Input voltage error!", ERRBIT_ANGLE: "Angle sen error!",
                 ERRBIT_OVERHEAT: "Overheat error!", ERRBIT_OVERELE: "OverEle error!",
                 ERRBIT_OVERLOAD: "Overload error!"}
        return " ".join(f"[ServoStatus] {text}" for bit, text in names.items() if error & bit)

    def _servo(self, port: PortHandler, servo_id: int) -> tuple[Servo | None, int]:
        port.bus._io()
        result = port.bus._reply()
        servo = port.bus.servos.get(servo_id)
        if servo is None:
            return None, COMM_RX_TIMEOUT
        return (servo, result) if result == COMM_SUCCESS else (None, result)

    def ping(self, port: PortHandler, servo_id: int) -> tuple[int, int, int]:
        port.bus.calls.append(("ping", servo_id))
        servo, result = self._servo(port, servo_id)
        return (servo.word(3), result, servo.status) if servo else (0, result, 0)

    def read1ByteTxRx(self, port: PortHandler, servo_id: int, address: int) -> tuple[int, int, int]:
        port.bus.calls.append(("read1ByteTxRx", servo_id, address))
        servo, result = self._servo(port, servo_id)
        return (servo.table[address], result, servo.status) if servo else (0, result, 0)

    def read2ByteTxRx(self, port: PortHandler, servo_id: int, address: int) -> tuple[int, int, int]:
        port.bus.calls.append(("read2ByteTxRx", servo_id, address))
        servo, result = self._servo(port, servo_id)
        return (servo.word(address), result, servo.status) if servo else (0, result, 0)

    def write1ByteTxRx(self, port: PortHandler, servo_id: int, address: int, data: int) -> tuple[int, int]:
        port.bus.calls.append(("write1ByteTxRx", servo_id, address, data))
        servo, result = self._servo(port, servo_id)
        if servo is None:
            return result, 0
        servo.write(address, [data])
        return result, servo.status

    def write2ByteTxRx(self, port: PortHandler, servo_id: int, address: int, data: int) -> tuple[int, int]:
        port.bus.calls.append(("write2ByteTxRx", servo_id, address, data))
        servo, result = self._servo(port, servo_id)
        if servo is None:
            return result, 0
        servo.write(address, [data & 0xFF, (data >> 8) & 0xFF])
        return result, servo.status


def PacketHandler(protocol_end: int) -> _PacketHandler:  # the SDK names its factory function like a class
    """The SDK's `PacketHandler(protocol_end)`; STS servos use 0 (little-endian words)."""
    if protocol_end != 0:
        raise ValueError("this mock models STS servos: protocol_end must be 0")
    return _PacketHandler()


class GroupSyncRead:
    def __init__(self, port: PortHandler, ph: _PacketHandler, start_address: int, data_length: int) -> None:
        self.port, self.ph = port, ph
        self.start_address, self.data_length = start_address, data_length
        self.data_dict: dict[int, list[int]] = {}

    def addParam(self, servo_id: int) -> bool:
        if servo_id in self.data_dict:
            return False
        self.data_dict[servo_id] = []
        return True

    def clearParam(self) -> None:
        self.data_dict.clear()

    def txRxPacket(self) -> int:
        bus = self.port.bus
        bus.calls.append(("GroupSyncRead.txRxPacket",))
        bus._io()
        if not self.data_dict:
            return COMM_NOT_AVAILABLE
        for servo in bus.servos.values():
            servo.step(bus.max_step, bus.dt)
        result = bus._reply()
        for servo_id in self.data_dict:
            servo = bus.servos.get(servo_id)
            if result != COMM_SUCCESS or servo is None:
                return result if result != COMM_SUCCESS else COMM_RX_TIMEOUT
            self.data_dict[servo_id] = list(servo.table[self.start_address:self.start_address + self.data_length])
        return COMM_SUCCESS

    def isAvailable(self, servo_id: int, address: int, data_length: int) -> bool:
        if servo_id not in self.data_dict:
            return False
        if address < self.start_address or self.start_address + self.data_length - data_length < address:
            return False
        return len(self.data_dict[servo_id]) >= data_length

    def getData(self, servo_id: int, address: int, data_length: int) -> int:
        if not self.isAvailable(servo_id, address, data_length):
            return 0
        data = self.data_dict[servo_id][address - self.start_address:address - self.start_address + data_length]
        return sum(byte << (8 * i) for i, byte in enumerate(data))


class GroupSyncWrite:
    def __init__(self, port: PortHandler, ph: _PacketHandler, start_address: int, data_length: int) -> None:
        self.port, self.ph = port, ph
        self.start_address, self.data_length = start_address, data_length
        self.data_dict: dict[int, list[int]] = {}

    def addParam(self, servo_id: int, data: list[int]) -> bool:
        if servo_id in self.data_dict or len(data) > self.data_length:
            return False
        self.data_dict[servo_id] = list(data)
        return True

    def changeParam(self, servo_id: int, data: list[int]) -> bool:
        if servo_id not in self.data_dict or len(data) > self.data_length:
            return False
        self.data_dict[servo_id] = list(data)
        return True

    def clearParam(self) -> None:
        self.data_dict.clear()

    def txPacket(self) -> int:
        bus = self.port.bus
        params = {servo_id: list(data) for servo_id, data in self.data_dict.items()}
        bus.calls.append(("GroupSyncWrite.txPacket", self.start_address, params))
        bus._io()
        if not self.data_dict:
            return COMM_NOT_AVAILABLE
        for servo_id, data in self.data_dict.items():  # broadcast, no reply: unknown ids are silently ignored
            if servo_id in bus.servos:
                bus.servos[servo_id].write(self.start_address, data)
        return COMM_SUCCESS
