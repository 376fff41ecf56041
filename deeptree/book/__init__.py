"""The tutorial as a book: the executed notebooks of a run as a static site (MkDocs).

* :mod:`deeptree.book.runs`: which run the book shows, and each notebook's run times;
* :mod:`deeptree.book.pages`: the Markdown pages (chapters, landing page, results, model
  card, API reference) made from a run folder, the README and ``results/``;
* :mod:`deeptree.book.bottom_line`: the committed run's bottom line at the top of chapters 07
  and 08, written from its results files;
* :mod:`deeptree.book.mesh`: the small surface mesh behind the interactive 3D view;
* :mod:`deeptree.book.build`: stages the pages and runs MkDocs (``make book``);
* :mod:`deeptree.book.browser`: opens the pages in headless Chromium, fails on console
  errors, broken internal links, placeholders, blank figures and tables cut without a scroll,
  saves screenshots (``make book-test``);
* :mod:`deeptree.book.publish`: copies a finished run's executed notebooks, tables and summary
  beside the committed results, so that a fresh clone builds its book without computing.

``python -m deeptree.book build|check|publish`` is the command line. The book needs the ``book``
extra (``pip install -e '.[book]'``).
"""
