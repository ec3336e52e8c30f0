"""An incident's questions: who installed a file (exposure), and is what a lock pins served."""
