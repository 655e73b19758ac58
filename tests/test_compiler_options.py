"""lars_jax.parallel.compiler_options: the train step's XLA options per backend."""
import jax
import pytest

from lars_jax import parallel


@pytest.fixture(autouse=True)
def fresh_probe():
    parallel._gpu_command_buffer_options.cache_clear()
    yield
    parallel._gpu_command_buffer_options.cache_clear()


def test_none_off_gpu():
    assert parallel.compiler_options("cpu") == {} and parallel.compiler_options("tpu") == {}
    assert parallel.compiler_options() == {}  # the tests' backend is the CPU


def test_gpu_command_buffers_keep_xlas_default_types_and_add_convolutions():
    types = parallel.GPU_COMMAND_BUFFER.split(",")
    assert {"FUSION", "CUBLAS", "CUBLASLT", "CUSTOM_CALL", "CUDNN", "CONVOLUTION"} <= set(types)
    assert len(types) == len(set(types))


def test_xla_flags_setting_the_option_win(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_gpu_enable_command_buffer=")
    assert parallel.compiler_options("gpu") == {}


def test_an_xla_that_rejects_the_types_gets_its_own_defaults(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")

    def rejecting_jit(*args, compiler_options=None, **kwargs):
        assert compiler_options == {"xla_gpu_enable_command_buffer": parallel.GPU_COMMAND_BUFFER}
        raise RuntimeError("INVALID_ARGUMENT: 'CONVOLUTION' is not a valid CommandBufferCmdType value")

    monkeypatch.setattr(jax, "jit", rejecting_jit)
    assert parallel.compiler_options("gpu") == {}


def test_an_xla_that_takes_them_gets_them(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    probed = []

    class Compiled:
        def __init__(self, fn, compiler_options):
            probed.append(compiler_options)

        def lower(self, *args):
            return self

        def compile(self):
            return self

    monkeypatch.setattr(jax, "jit", lambda fn, compiler_options=None: Compiled(fn, compiler_options))
    expected = {"xla_gpu_enable_command_buffer": parallel.GPU_COMMAND_BUFFER}
    assert parallel.compiler_options("gpu") == expected
    assert parallel.compiler_options("gpu") == expected and len(probed) == 1  # probed once per process
