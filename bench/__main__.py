"""Run every benchmark and print its figures."""

from __future__ import annotations

from bench import pipeline, protocol


def main() -> None:
    print("== protocol core ==")
    for line in protocol.run():
        print(line, flush=True)
    print("== pipeline ==")
    for line in pipeline.run():
        print(line, flush=True)


if __name__ == "__main__":
    main()
