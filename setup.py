"""Build the pcoreset extension modules with CMake (and ninja when present).

Environment:
  PCORESET_CUDA=AUTO|ON|OFF   build the CUDA module (default AUTO: when nvcc is found)
  PCORESET_SANITIZE=...       e.g. address,undefined for a sanitizer build
  PCORESET_BUILD_DIR=...      the CMake build folder (default: build/cmake-<python>-<build type>
                              in the source tree, kept between installs)
  CMAKE_ARGS=...              extra arguments for the CMake configure step

Rebuilds: the CMake build folder stays in the source tree, so a second
`pip install .` (an extra added, nothing changed) reconfigures and relinks
nothing that is up to date. pip builds in an isolated environment whose path
changes every time; pybind11's headers are therefore copied once into the build
folder (per pybind11 version), so that the compile commands, and with them
ninja's view of every object, stay the same between installs.
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(os.environ.get("PCORESET_BUILD_DIR") or _default_build_dir())
        build_dir.mkdir(parents=True, exist_ok=True)
        pybind11_dir = _stable_pybind11(build_dir)
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11_dir}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('PCORESET_BUILD_TYPE', 'Release')}",
            f"-DPCORESET_CUDA={os.environ.get('PCORESET_CUDA', 'AUTO')}",
            f"-DPCORESET_SANITIZE={os.environ.get('PCORESET_SANITIZE', '')}",
        ]
        if os.environ.get("PCORESET_CUDA_ARCHS"):
            args.append(f"-DPCORESET_CUDA_ARCHS={os.environ['PCORESET_CUDA_ARCHS']}")
        if shutil.which("ninja") or _ninja_from_pip():
            args += ["-G", "Ninja"]
            ninja = shutil.which("ninja") or _ninja_from_pip()
            args.append(f"-DCMAKE_MAKE_PROGRAM={ninja}")
        args += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(["cmake", str(ROOT), *args], cwd=build_dir, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_dir, check=True)
        cache = build_dir / "CMakeCache.txt"
        type(self)._cuda_built = cache.exists() and "PCORESET_CUDA_MODULE_BUILT:INTERNAL=ON" in cache.read_text()

    def copy_extensions_to_source(self) -> None:
        # --inplace: copy the modules this run built into the source tree
        # through a temporary file and a rename, never by writing into a file
        # that a running interpreter may have loaded (that crashed test runs
        # during rebuilds). The optional CUDA module is copied only when this
        # CMake run built it: an older one left in build/lib stays there.
        built = Path(self.build_lib).resolve() / "pcoreset"
        for ext in self.extensions:
            # where this run wrote the module (build_lib), not the in-place name
            src = Path(self.build_lib).resolve() / self.get_ext_filename(ext.name)
            _replace_file(src, ROOT / "pcoreset" / src.name)
        if self._cuda_built:
            for extra in built.glob("_C_cuda*"):
                if extra.suffix in (".so", ".pyd"):
                    _replace_file(extra, ROOT / "pcoreset" / extra.name)

    _cuda_built = False


def _default_build_dir() -> Path:
    """A build folder per interpreter and build type, kept in the source tree."""
    kind = os.environ.get("PCORESET_BUILD_TYPE", "Release").lower()
    san = os.environ.get("PCORESET_SANITIZE", "").replace(",", "-")
    return ROOT / "build" / f"cmake-{sys.implementation.cache_tag}-{kind}{'-' + san if san else ''}"


def _stable_pybind11(build_dir: Path) -> str:
    """pybind11's CMake folder, from a copy in the build folder that stays put
    while pybind11's version does (pip's isolated build environments move)."""
    try:
        import pybind11
    except ImportError as exc:  # pragma: no cover - build requirement
        raise RuntimeError("building pcoreset needs pybind11 (pip install pybind11)") from exc
    src = Path(pybind11.__file__).resolve().parent
    cmake_rel = Path(pybind11.get_cmake_dir()).resolve().relative_to(src)
    dst = build_dir / "pybind11-stage" / pybind11.__version__ / "pybind11"
    if not (dst / cmake_rel).is_dir():
        tmp = dst.with_name(f".pybind11.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__"))  # copy2: keeps mtimes
        try:
            os.replace(tmp, dst)
        except OSError:  # another build staged it first
            shutil.rmtree(tmp, ignore_errors=True)
    return str(dst / cmake_rel)


def _replace_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _ninja_from_pip():
    try:
        import ninja

        path = Path(ninja.BIN_DIR) / "ninja"
        return str(path) if path.exists() else None
    except ImportError:
        return None


setup(
    ext_modules=[CMakeExtension("pcoreset._C")],
    cmdclass={"build_ext": CMakeBuild},
)
