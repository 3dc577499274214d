"""The delivery lifecycle: every webhook delivery the receivers accept, from its row to its end.

``states`` names the states and the moves between them; ``outbox`` is the receivers' INSERT; ``store`` is
every other write to the ``deliveries`` table (claiming for dispatch, claiming for work, finishing). Nothing
else writes that table.
"""
