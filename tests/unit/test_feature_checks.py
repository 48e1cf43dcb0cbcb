"""placeholder"""

def test_nothing():
    pass
