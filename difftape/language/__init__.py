"""The language: program text -> syntax tree (``parser``, ``syntax``) -> program IR (``compiler``)."""
