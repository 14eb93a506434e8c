"""The Dagster resources: configuration that the UI shows and runs may override, each handing
steps the plain object of the library layer below it (the lake, the landing source, the
privacy policy). Nothing below this layer imports Dagster for them."""
