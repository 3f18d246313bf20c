"""Stage 14, board: the matrix board, a static site of every cell's state, known-good image and decode rate.

A stage after promotion: it reads the registry (collect.py, through promotion.store) and writes
files (render.write_site); everything between is pure.

    cells, excluded = board_inputs(matrix, selected, selected_excluded, plans)   # inputs.py
    evidence = collect_evidence(StoreSource(client, repository), [c.id for c in cells])
    board = build_board(cells=cells, excluded=excluded, evidence=evidence,
                        image_repo="127.0.0.1:5000/llm-factory/images", generated_at=utc_now())
    write_site(board, Path("board"))
"""
