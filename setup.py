from setuptools import find_packages, setup

setup(
    name="stedi_assets",
    version="0.1.0",
    description="STEDI Human Balance Analytics lakehouse as a Dagster asset graph",
    python_requires=">=3.11,<3.14",
    packages=find_packages(exclude=["stedi_assets_tests*", "bench*"]),  # bench/ runs from the checkout
    package_data={"stedi_assets": ["sample_data/**/*.json"]},
    include_package_data=True,
    install_requires=[
        # The integrations pin dagster exactly; keep the five in lock step.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        # `dg launch`, the README's run command (`dagster job execute` is superseded by it).
        "dagster-dg-cli==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-pyspark==0.29.27",
        "pyspark>=4.0,<5",
        "pandas>=2.2,<3",  # for PySpark (its Arrow transfer), which supports pandas 2 and warns on pandas 3
        "numpy>=1.26",  # imported directly: the generator and the landing parser
        "pyarrow>=21",  # what deltalake 1.6 reads and writes Arrow with (its pyarrow extra)
        "duckdb==1.5.6",
        # The lake's table format: every table is a Delta table (reader protocol 1).
        "deltalake==1.6.6",
        "boto3>=1.34",
        "click>=8.1",
        "matplotlib>=3.8",  # the charts in the UI (charts.py), drawn with Agg; imported only to draw
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            # Runs the suite on two workers (pyproject's addopts: -n 2 --dist loadfile).
            "pytest-xdist>=3.5",
            "moto[server]>=5.0",
            # The tests read the lake with Polars too, a reader that shares no code with ours.
            "polars>=1.0",
            # The UI test drives Debian's chromium through its chromium-driver (no browser download).
            "selenium>=4.20",
            # Property tests of incremental ingest over random arrival sequences.
            "hypothesis>=6.100",
        ],
    },
    entry_points={"console_scripts": ["stedi = stedi_assets.cli:main"]},
)
